//! `wasi:keyvalue` for qwasr runtimes: `store`, `atomics` and `batch` in the
//! shapes guests in the wild import, over one backend trait, [`Store`].
//!
//! Each WIT flavour is a cargo feature: `draft` (`@0.2.0-draft`, as wasmtime
//! and wasmCloud bind it), `draft2` (`@0.2.0-draft2`, the proposal's text),
//! `draft2-spin` (Spin's `@0.2.0-draft2`, whose `get-many` returns one
//! `(key, option<value>)` per requested key) and `draft2-async` (the
//! proposal's `@0.2.0-draft2` with every function an `async func`, for WASI
//! 0.3 guests; it needs the kernel's `p3`). [`add_to_linker`] links every
//! flavour compiled in; the three `draft2` flavours share a name and
//! version, so one runtime enables at most one of them. Every flavour has
//! the same grants, error texts and durability.
//!
//! Two backends come with the crate:
//!
//! - [`embedded`], the default: a redb file, `<data dir>/keyvalue/store.redb`.
//!   A write (`set`, `delete`, `increment`, compare-and-swap, the batch
//!   writes) is acknowledged only once its transaction is committed and
//!   fsynced, so an acknowledged write survives a crash or `kill -9`.
//!   Concurrent writes share commits (group commit), so durability costs one
//!   fsync per group, not per write.
//! - [`memory`]: process memory, lost when the runtime exits.
//!
//! Buckets open by any name unless the manifest lists them
//! (`[keyvalue] buckets`): then other names get `error::access-denied`.
//! Counters are stored as decimal text, the way Redis `INCRBY` keeps them,
//! so every backend reads the same bytes.

#![deny(missing_docs)]

#[cfg(feature = "draft")]
mod draft;
#[cfg(any(feature = "draft2", feature = "draft2-spin"))]
mod draft2;
#[cfg(feature = "draft2-async")]
mod draft2_async;
#[cfg(feature = "draft2-spin")]
mod draft2_spin;
pub mod embedded;
pub mod memory;

use anyhow::Result;
use qwasr_kernel::{BackendConfig, View};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::Linker;

/// A boxed future, as the backend trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Most keys one `list-keys` page holds.
pub const PAGE_KEYS: usize = 1000;
/// Most bytes of key text one `list-keys` page holds (a page always holds at
/// least one key, however long).
pub const PAGE_BYTES: usize = 1 << 20;

/// A page of keys and the cursor for the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage<C = String> {
    /// Keys on this page.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` on the last page.
    pub cursor: Option<C>,
}

/// Collects one page of keys, stopping at [`PAGE_KEYS`] or [`PAGE_BYTES`].
#[derive(Default)]
pub struct Pager {
    keys: Vec<String>,
    bytes: usize,
}

impl Pager {
    /// Adds `key` if the page has room; `false` (and `key` left out) once it is full.
    pub fn push(&mut self, key: &str) -> bool {
        let full = self.keys.len() >= PAGE_KEYS
            || (!self.keys.is_empty() && self.bytes + key.len() > PAGE_BYTES);
        if full {
            return false;
        }
        self.bytes += key.len();
        self.keys.push(key.to_string());
        true
    }

    /// The page; with `more`, its cursor is its last key (resume after it).
    pub fn finish(self, more: bool) -> KeyPage {
        let cursor = if more {
            self.keys.last().cloned()
        } else {
            None
        };
        KeyPage {
            keys: self.keys,
            cursor,
        }
    }

    /// The page for a numeric cursor: the next page starts `offset + keys` in.
    pub fn finish_at(self, offset: u64, more: bool) -> KeyPage<u64> {
        let next = offset.saturating_add(self.keys.len() as u64);
        KeyPage {
            keys: self.keys,
            cursor: more.then_some(next),
        }
    }
}

/// What a keyvalue backend implements; the WIT bindings call only this.
///
/// Errors reach the guest as `error::other` with the error's text (causes
/// included), so make them specific. Buckets are created on first write; a
/// bucket name is any string (empty, with `/` or NUL, kilobytes long).
/// Access control (`[keyvalue] buckets`) is done by [`Ctx`] before
/// [`Store::open`] is called.
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
    /// One page of keys (see [`Pager`] for the size), resuming after `cursor`,
    /// which is `None` for the first page and otherwise a cursor this backend
    /// returned (`draft2`'s string cursor). Another string must not
    /// panic: a backend may treat it as a fresh start or return an error.
    fn list_keys<'a>(&'a self, bucket: &'a str, cursor: Option<String>) -> BoxFuture<'a, KeyPage>;
    /// One page of keys for a numeric cursor (`draft`'s `u64`): `cursor` is
    /// 0 for the first page, then what the previous page returned.
    ///
    /// The default treats it as an offset into the order [`Store::list_keys`]
    /// yields and pages there from the start (cost grows with the offset); a
    /// backend with native numeric cursors (Redis `SCAN`) may use those.
    fn list_keys_at<'a>(&'a self, bucket: &'a str, cursor: u64) -> BoxFuture<'a, KeyPage<u64>> {
        Box::pin(async move {
            let mut skip = cursor;
            let mut page_cursor = None;
            loop {
                let page = self.list_keys(bucket, page_cursor).await?;
                let len = page.keys.len() as u64;
                if skip < len || page.cursor.is_none() {
                    let keys: Vec<String> = page
                        .keys
                        .into_iter()
                        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                        .collect();
                    let next = cursor.saturating_add(keys.len() as u64);
                    return Ok(KeyPage {
                        keys,
                        cursor: page.cursor.map(|_| next),
                    });
                }
                skip -= len;
                page_cursor = page.cursor;
            }
        })
    }
    /// Adds `delta` to the decimal counter at `key` (absent counts as 0);
    /// returns the new value. Must be atomic with respect to other writes.
    fn increment<'a>(&'a self, bucket: &'a str, key: &'a str, delta: i64) -> BoxFuture<'a, i64>;
    /// Sets `key` to `value` only if its current value is `expected` (`None`:
    /// absent); returns whether it did. Must be atomic with respect to other writes.
    fn compare_and_swap<'a>(
        &'a self,
        bucket: &'a str,
        key: &'a str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> BoxFuture<'a, bool>;
    /// The values of `keys`, one entry per key, in order. The default calls
    /// [`Store::get`] per key.
    fn get_many<'a>(
        &'a self,
        bucket: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Vec<Option<Vec<u8>>>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(bucket, key).await?);
            }
            Ok(values)
        })
    }
    /// Stores every pair; on an error some may have been stored. The default
    /// calls [`Store::set`] per pair.
    fn set_many<'a>(&'a self, bucket: &'a str, kvs: Vec<(String, Vec<u8>)>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for (key, value) in kvs {
                self.set(bucket, &key, value).await?;
            }
            Ok(())
        })
    }
    /// Removes every key; on an error some may have been removed. The default
    /// calls [`Store::delete`] per key.
    fn delete_many<'a>(&'a self, bucket: &'a str, keys: Vec<String>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for key in &keys {
                self.delete(bucket, key).await?;
            }
            Ok(())
        })
    }
}

/// Reads a counter stored as decimal text.
pub fn parse_counter(key: &str, v: &[u8]) -> Result<i64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("value of `{key}` is not a decimal counter"))
}

/// `current + delta` as a counter, or an error naming `key` on overflow.
pub fn add_counter(key: &str, current: i64, delta: i64) -> Result<i64> {
    current
        .checked_add(delta)
        .ok_or_else(|| anyhow::anyhow!("counter `{key}` would overflow ({current} + {delta})"))
}

/// Per-store `wasi:keyvalue` state: the backend and the manifest's grants,
/// shared by every request.
#[derive(Clone)]
pub struct Ctx {
    store: Arc<dyn Store>,
    /// `[keyvalue] buckets`; `None` grants every name.
    granted: Option<&'static [&'static str]>,
}

impl Ctx {
    /// A context over `store`, granting the buckets `cfg` lists (`[keyvalue]
    /// buckets`; every name when it lists none).
    pub fn new(store: impl Store, cfg: &BackendConfig) -> Ctx {
        Ctx {
            store: Arc::new(store),
            granted: cfg.names(),
        }
    }

    /// The backend.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Whether the guest may open `bucket`.
    pub fn allows(&self, bucket: &str) -> bool {
        self.granted.is_none_or(|names| names.contains(&bucket))
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

/// Adds `store`, `atomics` and `batch` of every flavour compiled in (cargo
/// features `draft`, `draft2`, `draft2-spin`, `draft2-async`) to the linker.
///
/// Fails if more than one of `draft2`, `draft2-spin` and `draft2-async` is
/// enabled: they define the same `wasi:keyvalue/*@0.2.0-draft2` names.
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    let draft2 = [
        ("draft2", cfg!(feature = "draft2")),
        ("draft2-spin", cfg!(feature = "draft2-spin")),
        ("draft2-async", cfg!(feature = "draft2-async")),
    ];
    let on: Vec<&str> = draft2.iter().filter(|f| f.1).map(|f| f.0).collect();
    if on.len() > 1 {
        anyhow::bail!(
            "qwasr-wasi-keyvalue is built with features `{}`, which each bind \
             wasi:keyvalue@0.2.0-draft2; enable only the one the component imports",
            on.join("`, `")
        );
    }
    #[cfg(feature = "draft")]
    draft::add_to_linker(linker)?;
    #[cfg(feature = "draft2")]
    draft2::add_to_linker(linker)?;
    #[cfg(feature = "draft2-spin")]
    draft2_spin::add_to_linker(linker)?;
    #[cfg(feature = "draft2-async")]
    draft2_async::add_to_linker(linker)?;
    let _ = linker;
    Ok(())
}

#[cfg(any(
    feature = "draft",
    feature = "draft2",
    feature = "draft2-spin",
    feature = "draft2-async"
))]
struct HasKeyValue;

#[cfg(any(
    feature = "draft",
    feature = "draft2",
    feature = "draft2-spin",
    feature = "draft2-async"
))]
impl wasmtime::component::HasData for HasKeyValue {
    type Data<'a> = qwasr_kernel::CtxView<'a, Ctx>;
}

#[cfg(any(
    feature = "draft",
    feature = "draft2",
    feature = "draft2-spin",
    feature = "draft2-async"
))]
fn view<T: View<Ctx>>(t: &mut T) -> qwasr_kernel::CtxView<'_, Ctx> {
    t.view()
}

/// The glue the flavours share token for token (only the generated types
/// differ): the error mapping, and the methods whose WIT types agree.
///
/// An arm with a receiver writes the methods for the sync flavours with
/// `[&mut self] self` (inside `impl … for CtxView`) and for the async one
/// with `[acc: &Accessor<T, Self>] acc` (inside `impl<T> …WithStore<T> for
/// HasKeyValue`); both reach [`ops`] through [`qwasr_kernel::Access`]. Expects
/// `store`, `Bucket`, `Resource` and the arm's other generated types in scope.
#[cfg(any(
    feature = "draft",
    feature = "draft2",
    feature = "draft2-spin",
    feature = "draft2-async"
))]
macro_rules! store_glue {
    // `fn $name` linking the given generated interfaces.
    (link $name:ident: $($interface:ident),*) => {
        pub(crate) fn $name<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
            $($interface::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;)*
            Ok(())
        }
    };
    (errors) => {
        pub(crate) type KvResult<T> = anyhow::Result<Result<T, store::Error>>;

        /// The guest's view of an operation's error.
        pub(crate) fn guest<T>(r: $crate::ops::Op<T>) -> KvResult<T> {
            r.map(|r| {
                r.map_err(|e| match e {
                    $crate::ops::Error::AccessDenied => store::Error::AccessDenied,
                    $crate::ops::Error::Other(text) => store::Error::Other(text),
                })
            })
        }
    };
    (open [$($recv:tt)*] $r:ident) => {
        async fn open($($recv)*, identifier: String) -> KvResult<Resource<Bucket>> {
            guest($crate::ops::open($r, identifier).await)
        }
    };
    (bucket [$($recv:tt)*] $r:ident) => {
        async fn get($($recv)*, b: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
            guest($crate::ops::get($r, &b, &key).await)
        }

        async fn set($($recv)*, b: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
            guest($crate::ops::set($r, &b, &key, value).await)
        }

        async fn delete($($recv)*, b: Resource<Bucket>, key: String) -> KvResult<()> {
            guest($crate::ops::delete($r, &b, &key).await)
        }

        async fn exists($($recv)*, b: Resource<Bucket>, key: String) -> KvResult<bool> {
            guest($crate::ops::exists($r, &b, &key).await)
        }
    };
    // `draft2`'s string cursors.
    (list-keys [$($recv:tt)*] $r:ident) => {
        async fn list_keys(
            $($recv)*,
            b: Resource<Bucket>,
            cursor: Option<String>,
        ) -> KvResult<store::KeyResponse> {
            let page = guest($crate::ops::list_keys($r, &b, cursor).await)?;
            Ok(page.map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            }))
        }
    };
    // The proposal's `get-many`: `none` for a missing key.
    (get-many [$($recv:tt)*] $r:ident) => {
        async fn get_many(
            $($recv)*,
            b: Resource<Bucket>,
            keys: Vec<String>,
        ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
            Ok(guest($crate::ops::get_many($r, &b, keys).await)?.map($crate::ops::present))
        }
    };
    (batch writes [$($recv:tt)*] $r:ident) => {
        async fn set_many(
            $($recv)*,
            b: Resource<Bucket>,
            kvs: Vec<(String, Vec<u8>)>,
        ) -> KvResult<()> {
            guest($crate::ops::set_many($r, &b, kvs).await)
        }

        async fn delete_many($($recv)*, b: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
            guest($crate::ops::delete_many($r, &b, keys).await)
        }
    };
    // `draft2`'s signed counters and compare-and-swap.
    (atomics [$($recv:tt)*] $r:ident) => {
        async fn increment(
            $($recv)*,
            b: Resource<Bucket>,
            key: String,
            delta: i64,
        ) -> KvResult<i64> {
            guest($crate::ops::increment($r, &b, &key, delta).await)
        }

        async fn swap(
            $($recv)*,
            cas: Resource<Cas>,
            value: Vec<u8>,
        ) -> anyhow::Result<Result<(), atomics::CasError>> {
            Ok(match guest($crate::ops::swap($r, cas, value).await)? {
                Ok(None) => Ok(()),
                Ok(Some(fresh)) => Err(atomics::CasError::CasFailed(fresh)),
                Err(e) => Err(atomics::CasError::StoreError(e)),
            })
        }
    };
    (cas [$($recv:tt)*] $r:ident) => {
        async fn new($($recv)*, b: Resource<Bucket>, key: String) -> KvResult<Resource<Cas>> {
            guest($crate::ops::cas_new($r, &b, key).await)
        }

        async fn current($($recv)*, cas: Resource<Cas>) -> KvResult<Option<Vec<u8>>> {
            Ok(Ok($crate::ops::cas_current($r, &cas)?))
        }
    };
}
#[cfg(any(
    feature = "draft",
    feature = "draft2",
    feature = "draft2-spin",
    feature = "draft2-async"
))]
use store_glue;

/// The operations every flavour shares. The outer `Result` traps the guest
/// (a bad resource handle); the inner one is the operation's error, which
/// each flavour maps to its WIT `error`.
// Each flavour uses a subset; a build with fewer than all of them leaves some unused.
#[cfg_attr(
    not(all(feature = "draft", feature = "draft2", feature = "draft2-spin")),
    allow(dead_code)
)]
mod ops {
    use super::{Bucket, Cas, Ctx, KeyPage, Store};
    use anyhow::Result;
    use qwasr_kernel::Access;
    use std::sync::Arc;
    use wasmtime::component::Resource;

    /// An operation's error, before a flavour maps it to its WIT `error`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Error {
        /// The manifest does not grant the bucket.
        AccessDenied,
        /// The backend's error text.
        Other(String),
    }

    pub(crate) type Op<T> = Result<Result<T, Error>>;

    /// The backend and the name of bucket `b`, taken out of the view.
    fn bucket(a: &mut impl Access<Ctx>, b: &Resource<Bucket>) -> Result<(Arc<dyn Store>, String)> {
        a.on(|v| Ok((v.ctx.store.clone(), v.table.get(b)?.name.clone())))
    }

    fn other(e: anyhow::Error) -> Error {
        Error::Other(format!("{e:#}"))
    }

    /// At most this many characters of a bucket name go into a log line.
    const LOGGED_NAME: usize = 200;

    pub(crate) async fn open(mut a: impl Access<Ctx>, name: String) -> Op<Resource<Bucket>> {
        let ctx = a.on(|v| v.ctx.clone());
        if !ctx.allows(&name) {
            let shown: String = name.chars().take(LOGGED_NAME).collect();
            let cut = if shown.len() < name.len() { "…" } else { "" };
            tracing::warn!(
                "keyvalue bucket {shown:?}{cut} is not granted: add it to [keyvalue] buckets in qwasr.toml"
            );
            return Ok(Err(Error::AccessDenied));
        }
        if let Err(e) = ctx.store.open(&name).await {
            return Ok(Err(other(e)));
        }
        Ok(Ok(a.on(|v| v.table.push(Bucket { name }))?))
    }

    pub(crate) async fn get(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        key: &str,
    ) -> Op<Option<Vec<u8>>> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.get(&bucket, key).await.map_err(other))
    }

    pub(crate) async fn set(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        key: &str,
        value: Vec<u8>,
    ) -> Op<()> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.set(&bucket, key, value).await.map_err(other))
    }

    pub(crate) async fn delete(mut a: impl Access<Ctx>, b: &Resource<Bucket>, key: &str) -> Op<()> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.delete(&bucket, key).await.map_err(other))
    }

    pub(crate) async fn exists(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        key: &str,
    ) -> Op<bool> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.exists(&bucket, key).await.map_err(other))
    }

    /// `draft2`'s string cursor.
    pub(crate) async fn list_keys(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        cursor: Option<String>,
    ) -> Op<KeyPage> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.list_keys(&bucket, cursor).await.map_err(other))
    }

    /// `draft`'s numeric cursor.
    pub(crate) async fn list_keys_at(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Op<KeyPage<u64>> {
        let (store, bucket) = bucket(&mut a, b)?;
        let page = store.list_keys_at(&bucket, cursor.unwrap_or(0));
        Ok(page.await.map_err(other))
    }

    pub(crate) async fn increment(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        key: &str,
        delta: i64,
    ) -> Op<i64> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.increment(&bucket, key, delta).await.map_err(other))
    }

    /// Spin's shape: one `(key, value)` per requested key, in order.
    pub(crate) async fn get_many(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        keys: Vec<String>,
    ) -> Op<Vec<(String, Option<Vec<u8>>)>> {
        let (store, bucket) = bucket(&mut a, b)?;
        let values = match store.get_many(&bucket, &keys).await {
            Ok(values) => values,
            Err(e) => return Ok(Err(other(e))),
        };
        if values.len() != keys.len() {
            return Ok(Err(Error::Other(format!(
                "the keyvalue backend returned {} values for {} keys",
                values.len(),
                keys.len()
            ))));
        }
        Ok(Ok(keys.into_iter().zip(values).collect()))
    }

    /// The proposal's shape of `get-many`: `none` for a missing key.
    pub(crate) fn present(pairs: Vec<(String, Option<Vec<u8>>)>) -> Vec<Option<(String, Vec<u8>)>> {
        pairs
            .into_iter()
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect()
    }

    pub(crate) async fn set_many(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        kvs: Vec<(String, Vec<u8>)>,
    ) -> Op<()> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.set_many(&bucket, kvs).await.map_err(other))
    }

    pub(crate) async fn delete_many(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        keys: Vec<String>,
    ) -> Op<()> {
        let (store, bucket) = bucket(&mut a, b)?;
        Ok(store.delete_many(&bucket, keys).await.map_err(other))
    }

    /// A compare-and-swap handle on `key` holding its current value.
    pub(crate) async fn cas_new(
        mut a: impl Access<Ctx>,
        b: &Resource<Bucket>,
        key: String,
    ) -> Op<Resource<Cas>> {
        let (store, bucket) = bucket(&mut a, b)?;
        let current = match store.get(&bucket, &key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(other(e))),
        };
        let cas = Cas {
            bucket,
            key,
            current,
        };
        Ok(Ok(a.on(|v| v.table.push(cas))?))
    }

    pub(crate) fn cas_current(
        mut a: impl Access<Ctx>,
        cas: &Resource<Cas>,
    ) -> Result<Option<Vec<u8>>> {
        a.on(|v| Ok(v.table.get(cas)?.current.clone()))
    }

    /// Consumes `cas`: `Ok(None)` when swapped; `Ok(Some(fresh))`, a handle
    /// holding the new current value, when the value had moved.
    pub(crate) async fn swap(
        mut a: impl Access<Ctx>,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> Op<Option<Resource<Cas>>> {
        let (store, cas) =
            a.on(|v| -> Result<_> { Ok((v.ctx.store.clone(), v.table.delete(cas)?)) })?;
        let Cas {
            bucket,
            key,
            current,
        } = cas;
        match store.compare_and_swap(&bucket, &key, current, value).await {
            Ok(true) => Ok(Ok(None)),
            Ok(false) => match store.get(&bucket, &key).await {
                Ok(current) => {
                    let fresh = Cas {
                        bucket,
                        key,
                        current,
                    };
                    Ok(Ok(Some(a.on(|v| v.table.push(fresh))?)))
                }
                Err(e) => Ok(Err(other(e))),
            },
            Err(e) => Ok(Err(other(e))),
        }
    }
}

#[cfg(test)]
// The flavours' tests use a subset; a build without `draft` and `draft2` leaves some unused.
#[cfg_attr(not(all(feature = "draft", feature = "draft2")), allow(dead_code))]
pub(crate) mod testing {
    //! What the tests of every module share: configurations and a context view.

    use qwasr_kernel::{App, BackendConfig, Code};
    use std::path::Path;
    use wasmtime::component::Resource;

    const fn app(names: &'static [(&'static str, &'static [&'static str])]) -> App {
        App {
            names,
            ..App::new("test", Code::Wasm(&[]))
        }
    }

    static OPEN: App = app(&[]);
    static GRANTED: App = app(&[("keyvalue", &["allowed", ""])]);

    /// A configuration with its data under `root`; `granted` lists
    /// `[keyvalue] buckets = ["allowed", ""]`, otherwise every name is granted.
    pub(crate) fn config(root: &Path, backend: &'static str, granted: bool) -> BackendConfig {
        BackendConfig {
            data_root: root.to_path_buf(),
            app: if granted { &GRANTED } else { &OPEN },
            interface: "keyvalue",
            backend,
            options: Vec::new(),
            overrides: Vec::new(),
        }
    }

    /// A context on `backend` with its data in a fresh directory (kept alive
    /// by the returned guard); `granted` as for [`config`].
    pub(crate) async fn connected(
        backend: &'static str,
        granted: bool,
    ) -> (tempfile::TempDir, crate::Ctx) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), backend, granted);
        let ctx = match backend {
            "memory" => crate::memory::connect(&cfg).await,
            _ => crate::embedded::connect(&cfg).await,
        };
        (dir, ctx.unwrap())
    }

    /// A context per backend, with its data under `root`.
    pub(crate) async fn backends(root: &Path) -> [crate::Ctx; 2] {
        let (memory, embedded) = (
            config(root, "memory", false),
            config(root, "embedded", false),
        );
        [
            crate::memory::connect(&memory).await.unwrap(),
            crate::embedded::connect(&embedded).await.unwrap(),
        ]
    }

    /// Stores an empty value under each of `keys`.
    pub(crate) async fn fill(ctx: &crate::Ctx, bucket: &str, keys: &[String]) {
        let kvs = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
        ctx.store().set_many(bucket, kvs).await.unwrap();
    }

    /// Another handle to the guest's bucket, as a borrowed parameter.
    pub(crate) fn borrow(b: &Resource<crate::Bucket>) -> Resource<crate::Bucket> {
        Resource::new_borrow(b.rep())
    }

    /// `k00000`, `k00001`, …: `n` keys in sorted order.
    pub(crate) fn numbered(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("k{i:05}")).collect()
    }

    /// Every key of a listing, following `page`'s cursors from the first page
    /// to the last; and how many pages that took.
    pub(crate) async fn drain<C>(
        mut page: impl AsyncFnMut(Option<C>) -> (Vec<String>, Option<C>),
    ) -> (Vec<String>, usize) {
        let (mut keys, mut pages, mut cursor) = (Vec::new(), 0, None);
        loop {
            let (more, next) = page(cursor).await;
            keys.extend(more);
            pages += 1;
            match next {
                Some(next) => cursor = Some(next),
                None => return (keys, pages),
            }
        }
    }

    /// A request's state: a context and its resource table.
    pub(crate) use qwasr_kernel::testing::Bare;
}

#[cfg(test)]
mod tests {
    use super::testing::{Bare, connected, drain, numbered};
    use super::*;

    #[tokio::test]
    async fn grants_deny_an_unlisted_bucket() {
        let (_dir, ctx) = connected("memory", true).await;
        let mut state = Bare::new(ctx);
        let mut v = state.view();
        assert!(matches!(
            ops::open(&mut v, "other".into()).await.unwrap(),
            Err(ops::Error::AccessDenied)
        ));
        assert!(ops::open(&mut v, "allowed".into()).await.unwrap().is_ok());
        assert!(ops::open(&mut v, "".into()).await.unwrap().is_ok());
        assert!(matches!(
            ops::open(&mut v, "allowed/".into()).await.unwrap(),
            Err(ops::Error::AccessDenied)
        ));

        let (_dir, ctx) = connected("memory", false).await;
        let mut state = Bare::new(ctx);
        let mut v = state.view();
        assert!(ops::open(&mut v, "other".into()).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn get_many_has_one_entry_per_key_in_order() {
        let (_dir, ctx) = connected("memory", false).await;
        let mut state = Bare::new(ctx);
        let mut v = state.view();
        let b = ops::open(&mut v, "b".into()).await.unwrap().unwrap();
        ops::set_many(
            &mut v,
            &b,
            vec![("a".into(), b"1".to_vec()), ("c".into(), b"3".to_vec())],
        )
        .await
        .unwrap()
        .unwrap();
        let keys = ["c", "missing", "a", "c"].map(String::from).to_vec();
        let pairs = ops::get_many(&mut v, &b, keys).await.unwrap().unwrap();
        let spin = vec![
            ("c".to_string(), Some(b"3".to_vec())),
            ("missing".to_string(), None),
            ("a".to_string(), Some(b"1".to_vec())),
            ("c".to_string(), Some(b"3".to_vec())),
        ];
        assert_eq!(pairs, spin);
        assert_eq!(
            ops::present(pairs),
            vec![
                Some(("c".to_string(), b"3".to_vec())),
                None,
                Some(("a".to_string(), b"1".to_vec())),
                Some(("c".to_string(), b"3".to_vec())),
            ]
        );
    }

    #[tokio::test]
    async fn a_stale_cas_handle_fails_and_comes_back_fresh() {
        let (_dir, ctx) = connected("memory", false).await;
        let mut state = Bare::new(ctx);
        let mut v = state.view();
        let b = ops::open(&mut v, "b".into()).await.unwrap().unwrap();
        let cas = ops::cas_new(&mut v, &b, "k".into()).await.unwrap().unwrap();
        ops::set(&mut v, &b, "k", b"moved".to_vec())
            .await
            .unwrap()
            .unwrap();
        let fresh = ops::swap(&mut v, cas, b"mine".to_vec())
            .await
            .unwrap()
            .unwrap()
            .expect("the value moved, so the swap fails");
        let seen = ops::cas_current(&mut v, &fresh).unwrap();
        assert_eq!(seen, Some(b"moved".to_vec()));
        assert!(
            ops::swap(&mut v, fresh, b"mine".to_vec())
                .await
                .unwrap()
                .unwrap()
                .is_none()
        );
        let value = ops::get(&mut v, &b, "k").await.unwrap().unwrap();
        assert_eq!(value, Some(b"mine".to_vec()));
    }

    #[tokio::test]
    async fn both_backends_page_through_2500_keys_with_both_cursors() {
        let dir = tempfile::tempdir().unwrap();
        let disk = embedded::Disk::open(&dir.path().join(embedded::FILE)).unwrap();
        let stores: [Box<dyn Store>; 2] = [Box::new(memory::Memory::default()), Box::new(disk)];
        for store in stores {
            let want = numbered(2500);
            let kvs = want.iter().map(|k| (k.clone(), vec![])).collect();
            store.set_many("b", kvs).await.unwrap();
            // Neighbouring buckets stay out of the listing.
            store.set("b\0", "k", vec![]).await.unwrap();
            store.set("a", "k", vec![]).await.unwrap();

            let by_key = drain(async |c| {
                let page = store.list_keys("b", c).await.unwrap();
                (page.keys, page.cursor)
            });
            assert_eq!(by_key.await, (want.clone(), 3));
            let by_offset = drain(async |c| {
                let page = store.list_keys_at("b", c.unwrap_or(0)).await.unwrap();
                (page.keys, page.cursor)
            });
            assert_eq!(by_offset.await, (want, 3));
            assert_eq!(
                store.list_keys_at("b", 9999).await.unwrap(),
                KeyPage::default()
            );

            // A cursor resumes after its key even once that key is gone.
            store.delete("b", "k00999").await.unwrap();
            let page = store.list_keys("b", Some("k00999".into())).await.unwrap();
            assert_eq!(page.keys.first().map(String::as_str), Some("k01000"));
        }
    }

    #[test]
    fn pages_stop_at_their_key_or_byte_budget() {
        let mut pager = Pager::default();
        let long = "x".repeat(PAGE_BYTES);
        assert!(pager.push(&long), "a page holds one key however long");
        assert!(!pager.push("y"));
        assert_eq!(pager.finish(true).cursor, Some(long));

        let mut pager = Pager::default();
        for i in 0..PAGE_KEYS {
            assert!(pager.push(&i.to_string()));
        }
        assert!(!pager.push("one more"));
        let page = pager.finish_at(7, true);
        assert_eq!(page.cursor, Some(7 + PAGE_KEYS as u64));
    }

    #[test]
    fn add_to_linker_links_the_flavours_compiled_in() {
        // Concurrency support is on by default when compiled in (`draft2-async`).
        let engine = wasmtime::Engine::default();
        let mut linker = Linker::<Bare<Ctx>>::new(&engine);
        let linked = add_to_linker(&mut linker);
        let draft2 = [
            cfg!(feature = "draft2"),
            cfg!(feature = "draft2-spin"),
            cfg!(feature = "draft2-async"),
        ];
        if draft2.iter().filter(|on| **on).count() > 1 {
            let e = linked.unwrap_err().to_string();
            assert!(
                e.contains("which each bind wasi:keyvalue@0.2.0-draft2"),
                "{e}"
            );
            if draft2.iter().all(|on| *on) {
                let named = "features `draft2`, `draft2-spin`, `draft2-async`,";
                assert!(e.contains(named), "{e}");
            }
        } else {
            linked.unwrap();
        }
    }
}
