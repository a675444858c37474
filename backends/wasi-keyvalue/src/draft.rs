//! `wasi:keyvalue@0.2.0-draft`: unsigned counters, numeric `list-keys` cursors, no compare-and-swap.

use crate::{Bucket, Ctx, HasKeyValue, ops, store_glue, view};
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

store_glue!(link add_to_linker: store, atomics, batch);

store_glue!(errors);

impl store::Host for CtxView<'_, Ctx> {
    store_glue!(open [&mut self] self);
}

impl store::HostBucket for CtxView<'_, Ctx> {
    store_glue!(bucket [&mut self] self);

    async fn drop(&mut self, b: Resource<Bucket>) -> Result<()> {
        self.table.delete(b)?;
        Ok(())
    }

    async fn list_keys(
        &mut self,
        b: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> KvResult<store::KeyResponse> {
        let page = guest(ops::list_keys_at(self, &b, cursor).await)?;
        Ok(page.map(|page| store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        }))
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
    store_glue!(get-many [&mut self] self);
    store_glue!(batch writes [&mut self] self);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Bare, backends, borrow, connected, drain, fill, numbered};

    #[tokio::test]
    async fn an_unlisted_bucket_is_access_denied() {
        let (_dir, ctx) = connected("memory", true).await;
        let mut state = Bare::new(ctx);
        let mut v = state.view();
        let denied = store::Host::open(&mut v, "nope".into()).await.unwrap();
        assert!(matches!(denied, Err(store::Error::AccessDenied)));
    }

    #[tokio::test]
    async fn numeric_cursors_page_through_every_key() {
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
}
