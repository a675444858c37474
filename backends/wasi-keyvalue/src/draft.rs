//! `wasi:keyvalue@0.2.0-draft`.

use crate::{Bucket, Ctx, HasKeyValue, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/keyvalue-0.2.0-draft",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": crate::Bucket },
        anyhow: true,
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    Ok(())
}

type KvResult<T> = Result<Result<T, store::Error>>;

/// The guest's view of a backend error.
fn guest<T>(r: ops::Op<T>) -> KvResult<T> {
    r.map(|r| r.map_err(store::Error::Other))
}

impl store::Host for CtxView<'_, Ctx> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        guest(ops::open(self, identifier).await)
    }
}

impl store::HostBucket for CtxView<'_, Ctx> {
    async fn get(&mut self, b: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        guest(ops::get(self, &b, &key).await)
    }

    async fn set(&mut self, b: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        guest(ops::set(self, &b, &key, value).await)
    }

    async fn delete(&mut self, b: Resource<Bucket>, key: String) -> KvResult<()> {
        guest(ops::delete(self, &b, &key).await)
    }

    async fn exists(&mut self, b: Resource<Bucket>, key: String) -> KvResult<bool> {
        guest(ops::exists(self, &b, &key).await)
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let page = guest(ops::list_keys(self, &b, cursor.map(|c| c.to_string())).await)?;
        Ok(page.map(|page| store::KeyResponse {
            keys: page.keys,
            // This version's cursor is a number; backend cursors that are not
            // numeric offsets end the listing here.
            cursor: page.cursor.and_then(|c| c.parse().ok()),
        }))
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for CtxView<'_, Ctx> {
    async fn increment(&mut self, b: Resource<Bucket>, key: String, delta: u64) -> KvResult<u64> {
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(store::Error::Other(format!(
                "delta {delta} does not fit in a signed 64-bit counter"
            ))));
        };
        let value = guest(ops::increment(self, &b, &key, delta).await)?;
        Ok(value.and_then(|v| {
            u64::try_from(v)
                .map_err(|_| store::Error::Other(format!("counter `{key}` is negative ({v})")))
        }))
    }
}

impl batch::Host for CtxView<'_, Ctx> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        guest(ops::get_many(self, &b, keys).await)
    }

    async fn set_many(&mut self, b: Resource<Bucket>, kvs: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        guest(ops::set_many(self, &b, kvs).await)
    }

    async fn delete_many(&mut self, b: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        guest(ops::delete_many(self, &b, keys).await)
    }
}
