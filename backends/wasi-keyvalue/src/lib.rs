//! `wasi:keyvalue` for qwasr runtimes: `store`, `atomics` and `batch`, at both
//! versions guests in the wild import (`@0.2.0-draft`, as wasmtime and
//! wasmCloud bind it, and `@0.2.0-draft2`, as Spin and Qwasr do), over one
//! backend trait, [`Store`].
//!
//! Buckets open by any name. Counters are stored as decimal text, the way
//! Redis `INCRBY` keeps them, so every backend reads the same bytes.
//!
//! The embedded default ([`embedded`]) keeps data in process memory.

#![deny(missing_docs)]

mod draft;
mod draft2;
pub mod embedded;

use anyhow::Result;
use qwasr_kernel::View;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// A boxed future, as the backend trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A page of keys and the cursor for the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys on this page.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<String>,
}

/// What a keyvalue backend implements. Errors become the guest's `other(string)`.
pub trait Store: Send + Sync + 'static {
    /// Checks that `bucket` may be opened. The default accepts every name.
    fn open<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, ()> {
        let _ = bucket;
        Box::pin(async { Ok(()) })
    }
    /// The value of `key`, if any.
    fn get<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    /// Stores `value` under `key`; returns once the write is durable for this backend.
    fn set<'a>(&'a self, bucket: &'a str, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, ()>;
    /// Removes `key`; absent keys are not an error.
    fn delete<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, ()>;
    /// Whether `key` exists.
    fn exists<'a>(&'a self, bucket: &'a str, key: &'a str) -> BoxFuture<'a, bool>;
    /// One page of keys, starting at `cursor`.
    fn list_keys<'a>(&'a self, bucket: &'a str, cursor: Option<String>) -> BoxFuture<'a, KeyPage>;
    /// Adds `delta` to the decimal counter at `key` (absent counts as 0); returns the new value.
    fn increment<'a>(&'a self, bucket: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, i64>;
    /// Sets `key` to `value` only if its current value is `expected`; returns whether it did.
    fn compare_and_swap<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> BoxFuture<'a, bool>;
}

/// Per-store `wasi:keyvalue` state: the backend, shared by every request.
#[derive(Clone)]
pub struct Ctx {
    store: Arc<dyn Store>,
}

impl Ctx {
    /// A context over `store`.
    pub fn new(store: impl Store) -> Ctx {
        Ctx {
            store: Arc::new(store),
        }
    }
}

/// An open bucket, as the guest holds it.
pub struct Bucket {
    name: String,
}

/// A compare-and-swap handle: the value seen when it was made.
pub struct Cas {
    bucket: String,
    key: String,
    current: Option<Vec<u8>>,
}

/// Adds every supported version of `store`, `atomics` and `batch` to the linker.
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    draft::add_to_linker(linker)?;
    draft2::add_to_linker(linker)?;
    Ok(())
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = qwasr_kernel::CtxView<'a, Ctx>;
}

fn view<T: View<Ctx>>(t: &mut T) -> qwasr_kernel::CtxView<'_, Ctx> {
    t.view()
}

/// The operations both WIT versions share. The outer `Result` traps the
/// guest (a bad resource handle); the inner one is the backend's error text,
/// which each version hands to the guest as `error::other`.
mod ops {
    use super::{Bucket, Ctx};
    use anyhow::Result;
    use qwasr_kernel::CtxView;
    use wasmtime::component::Resource;

    pub(crate) type Op<T> = Result<Result<T, String>>;

    fn name(v: &CtxView<'_, Ctx>, b: &Resource<Bucket>) -> Result<String> {
        Ok(v.table.get(b)?.name.clone())
    }

    fn text(e: anyhow::Error) -> String {
        format!("{e:#}")
    }

    pub(crate) async fn open(v: &mut CtxView<'_, Ctx>, name: String) -> Op<Resource<Bucket>> {
        if let Err(e) = v.ctx.store.open(&name).await {
            return Ok(Err(text(e)));
        }
        Ok(Ok(v.table.push(Bucket { name })?))
    }

    pub(crate) async fn get(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        key: &str,
    ) -> Op<Option<Vec<u8>>> {
        let bucket = name(v, b)?;
        Ok(v.ctx.store.get(&bucket, key).await.map_err(text))
    }

    pub(crate) async fn set(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        key: &str,
        value: Vec<u8>,
    ) -> Op<()> {
        let bucket = name(v, b)?;
        Ok(v.ctx.store.set(&bucket, key, value).await.map_err(text))
    }

    pub(crate) async fn delete(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        key: &str,
    ) -> Op<()> {
        let bucket = name(v, b)?;
        Ok(v.ctx.store.delete(&bucket, key).await.map_err(text))
    }

    pub(crate) async fn exists(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        key: &str,
    ) -> Op<bool> {
        let bucket = name(v, b)?;
        Ok(v.ctx.store.exists(&bucket, key).await.map_err(text))
    }

    pub(crate) async fn list_keys(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        cursor: Option<String>,
    ) -> Op<super::KeyPage> {
        let bucket = name(v, b)?;
        Ok(v.ctx.store.list_keys(&bucket, cursor).await.map_err(text))
    }

    pub(crate) async fn increment(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        key: &str,
        delta: i64,
    ) -> Op<i64> {
        let bucket = name(v, b)?;
        Ok(v.ctx
            .store
            .increment(&bucket, key, delta)
            .await
            .map_err(text))
    }

    pub(crate) async fn get_many(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        keys: Vec<String>,
    ) -> Op<Vec<Option<(String, Vec<u8>)>>> {
        let bucket = name(v, b)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match v.ctx.store.get(&bucket, &key).await {
                Ok(value) => out.push(value.map(|value| (key, value))),
                Err(e) => return Ok(Err(text(e))),
            }
        }
        Ok(Ok(out))
    }

    pub(crate) async fn set_many(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        kvs: Vec<(String, Vec<u8>)>,
    ) -> Op<()> {
        let bucket = name(v, b)?;
        for (key, value) in kvs {
            if let Err(e) = v.ctx.store.set(&bucket, &key, value).await {
                return Ok(Err(text(e)));
            }
        }
        Ok(Ok(()))
    }

    pub(crate) async fn delete_many(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        keys: Vec<String>,
    ) -> Op<()> {
        let bucket = name(v, b)?;
        for key in keys {
            if let Err(e) = v.ctx.store.delete(&bucket, &key).await {
                return Ok(Err(text(e)));
            }
        }
        Ok(Ok(()))
    }

    pub(crate) async fn cas_new(
        v: &mut CtxView<'_, Ctx>,
        b: &Resource<Bucket>,
        key: String,
    ) -> Op<super::Cas> {
        let bucket = name(v, b)?;
        Ok(match v.ctx.store.get(&bucket, &key).await {
            Ok(current) => Ok(super::Cas {
                bucket,
                key,
                current,
            }),
            Err(e) => Err(text(e)),
        })
    }

    /// `Ok(None)` when swapped; `Ok(Some(fresh))` with a refreshed handle when the value moved.
    pub(crate) async fn swap(
        v: &mut CtxView<'_, Ctx>,
        cas: super::Cas,
        value: Vec<u8>,
    ) -> Op<Option<super::Cas>> {
        let super::Cas {
            bucket,
            key,
            current,
        } = cas;
        match v
            .ctx
            .store
            .compare_and_swap(&bucket, &key, current, value)
            .await
        {
            Ok(true) => Ok(Ok(None)),
            Ok(false) => match v.ctx.store.get(&bucket, &key).await {
                Ok(current) => Ok(Ok(Some(super::Cas {
                    bucket,
                    key,
                    current,
                }))),
                Err(e) => Ok(Err(text(e))),
            },
            Err(e) => Ok(Err(text(e))),
        }
    }
}
