//! `wasi:keyvalue@0.2.0-draft2`: adds compare-and-swap, signed counters and string cursors.

use crate::{Bucket, Cas, Ctx, HasKeyValue, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/keyvalue-0.2.0-draft2",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::Bucket,
            "wasi:keyvalue/atomics.cas": crate::Cas,
        },
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
        cursor: Option<String>,
    ) -> KvResult<store::KeyResponse> {
        let page = guest(ops::list_keys(self, &b, cursor).await)?;
        Ok(page.map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        }))
    }

    async fn drop(&mut self, b: Resource<Bucket>) -> Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for CtxView<'_, Ctx> {
    async fn increment(&mut self, b: Resource<Bucket>, key: String, delta: i64) -> KvResult<i64> {
        guest(ops::increment(self, &b, &key, delta).await)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        Ok(match ops::swap(self, cas, value).await? {
            Ok(None) => Ok(()),
            Ok(Some(fresh)) => Err(atomics::CasError::CasFailed(self.table.push(fresh)?)),
            Err(e) => Err(atomics::CasError::StoreError(store::Error::Other(e))),
        })
    }
}

impl atomics::HostCas for CtxView<'_, Ctx> {
    async fn new(&mut self, b: Resource<Bucket>, key: String) -> KvResult<Resource<Cas>> {
        match guest(ops::cas_new(self, &b, key).await)? {
            Ok(cas) => Ok(Ok(self.table.push(cas)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn current(&mut self, cas: Resource<Cas>) -> KvResult<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> Result<()> {
        self.table.delete(cas)?;
        Ok(())
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
