//! `wasi:keyvalue@0.2.0-draft2`: adds compare-and-swap, signed counters and string cursors.
//!
//! Spin's flavour of this version ([`crate::draft2_spin`]) reuses `store` and
//! `atomics` from here; only `batch` differs.

use crate::{Bucket, Cas, Ctx, HasKeyValue, ops, store_glue, view};
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

// `pub`: the Spin flavour's bindings re-export them (the module itself is private).
#[cfg(feature = "draft2")]
use generated::wasi::keyvalue::batch;
pub use generated::wasi::keyvalue::{atomics, store};

/// Links the proposal's `draft2`: `store`, `atomics` and its `batch`.
#[cfg(feature = "draft2")]
pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    add_store_and_atomics(linker)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    Ok(())
}

/// Links what every `draft2` flavour shares.
pub(crate) fn add_store_and_atomics<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    Ok(())
}

store_glue!();

impl store::HostBucket for CtxView<'_, Ctx> {
    store_glue!(bucket);

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
        Ok(match guest(ops::swap(self, cas, value).await)? {
            Ok(None) => Ok(()),
            Ok(Some(fresh)) => Err(atomics::CasError::CasFailed(self.table.push(fresh)?)),
            Err(e) => Err(atomics::CasError::StoreError(e)),
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

#[cfg(feature = "draft2")]
impl batch::Host for CtxView<'_, Ctx> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        Ok(guest(ops::get_many(self, &b, keys).await)?.map(ops::present))
    }

    store_glue!(batch writes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{State, backends, borrow, config, drain, fill, numbered};

    #[tokio::test]
    async fn an_unlisted_bucket_is_access_denied() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::embedded::connect(&config(dir.path(), "embedded", true))
            .await
            .unwrap();
        let mut state = State::new(ctx);
        let mut v = state.view();
        let denied = store::Host::open(&mut v, "nope".into()).await.unwrap();
        assert!(matches!(denied, Err(store::Error::AccessDenied)));
        assert!(
            store::Host::open(&mut v, "allowed".into())
                .await
                .unwrap()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn string_cursors_page_through_every_key() {
        let dir = tempfile::tempdir().unwrap();
        for ctx in backends(dir.path()).await {
            let want = numbered(2500);
            fill(&ctx, "b", &want).await;
            let mut state = State::new(ctx);
            let mut v = state.view();
            let b = store::Host::open(&mut v, "b".into())
                .await
                .unwrap()
                .unwrap();
            let listed = drain(async |cursor| {
                let page = store::HostBucket::list_keys(&mut v, borrow(&b), cursor);
                let page = page.await.unwrap().unwrap();
                (page.keys, page.cursor)
            });
            assert_eq!(listed.await, (want, 3));
        }
    }

    #[tokio::test]
    async fn a_failed_swap_hands_back_a_fresh_handle() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::embedded::connect(&config(dir.path(), "embedded", false))
            .await
            .unwrap();
        let mut state = State::new(ctx);
        let mut v = state.view();
        let b = store::Host::open(&mut v, "b".into())
            .await
            .unwrap()
            .unwrap();
        let cas = atomics::HostCas::new(&mut v, borrow(&b), "k".into())
            .await
            .unwrap()
            .unwrap();
        store::HostBucket::set(&mut v, borrow(&b), "k".into(), b"theirs".to_vec())
            .await
            .unwrap()
            .unwrap();
        let Err(atomics::CasError::CasFailed(fresh)) =
            atomics::Host::swap(&mut v, cas, b"mine".to_vec())
                .await
                .unwrap()
        else {
            panic!("a swap against a moved value must fail with a fresh handle");
        };
        let seen = atomics::HostCas::current(&mut v, Resource::new_borrow(fresh.rep()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, Some(b"theirs".to_vec()));
        atomics::Host::swap(&mut v, fresh, b"mine".to_vec())
            .await
            .unwrap()
            .unwrap();
        let now = store::HostBucket::get(&mut v, borrow(&b), "k".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now, Some(b"mine".to_vec()));
    }
}
