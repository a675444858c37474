//! `wasi:keyvalue@0.2.0-draft2`: adds compare-and-swap, signed counters and string cursors.
//!
//! Spin's flavour of this version ([`crate::draft2_spin`]) reuses `store` and
//! `atomics` from here; only `batch` differs.

use crate::{Bucket, Cas, Ctx, HasKeyValue, store_glue, view};
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

// The proposal's `draft2`: `store`, `atomics` and its `batch`.
#[cfg(feature = "draft2")]
store_glue!(link add_to_linker: store, atomics, batch);

// What Spin's `draft2` takes from the proposal's.
#[cfg(feature = "draft2-spin")]
store_glue!(link add_store_and_atomics: store, atomics);

store_glue!(errors);

impl store::Host for CtxView<'_, Ctx> {
    store_glue!(open [&mut self] self);
}

impl store::HostBucket for CtxView<'_, Ctx> {
    store_glue!(bucket [&mut self] self);
    store_glue!(list-keys [&mut self] self);

    async fn drop(&mut self, b: Resource<Bucket>) -> Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::Host for CtxView<'_, Ctx> {
    store_glue!(atomics [&mut self] self);
}

impl atomics::HostCas for CtxView<'_, Ctx> {
    store_glue!(cas [&mut self] self);

    async fn drop(&mut self, cas: Resource<Cas>) -> Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(feature = "draft2")]
impl batch::Host for CtxView<'_, Ctx> {
    store_glue!(get-many [&mut self] self);
    store_glue!(batch writes [&mut self] self);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Bare, backends, borrow, connected, drain, fill, numbered};

    #[tokio::test]
    async fn an_unlisted_bucket_is_access_denied() {
        let (_dir, ctx) = connected("embedded", true).await;
        let mut state = Bare::new(ctx);
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
            let mut state = Bare::new(ctx);
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
        let (_dir, ctx) = connected("embedded", false).await;
        let mut state = Bare::new(ctx);
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
