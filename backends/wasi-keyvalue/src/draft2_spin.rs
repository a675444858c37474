//! Spin's `wasi:keyvalue@0.2.0-draft2`: the proposal's `store` and `atomics`
//! (bound once, in [`crate::draft2`]) with a `batch.get-many` that returns
//! one `(key, option<value>)` per requested key, in order.

use crate::{Bucket, Ctx, HasKeyValue, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/flavours/keyvalue-0.2.0-draft2.spin-variant",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        // Same types as the proposal's text: reuse those bindings and their impls.
        with: {
            "wasi:keyvalue/store": crate::draft2::store,
            "wasi:keyvalue/atomics": crate::draft2::atomics,
        },
        anyhow: true,
    });
}

use crate::draft2::{KvResult, guest};
use generated::wasi::keyvalue::batch;

pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    crate::draft2::add_store_and_atomics(linker)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view::<T>)?;
    Ok(())
}

impl batch::Host for CtxView<'_, Ctx> {
    async fn get_many(
        &mut self,
        b: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        guest(ops::get_many(self, &b, keys).await)
    }

    crate::store_glue!(batch writes [&mut self] self);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Bare, borrow, connected};

    #[tokio::test]
    async fn get_many_returns_every_requested_key_in_order() {
        let (_dir, ctx) = connected("embedded", false).await;
        let mut state = Bare::new(ctx);
        let mut v = state.view();
        let b = ops::open(&mut v, "b".into()).await.unwrap().unwrap();
        let kvs = vec![("a".into(), b"1".to_vec()), ("c".into(), vec![])];
        batch::Host::set_many(&mut v, borrow(&b), kvs)
            .await
            .unwrap()
            .unwrap();
        let keys = ["c", "b", "a", "b"].map(String::from).to_vec();
        let got = batch::Host::get_many(&mut v, borrow(&b), keys)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("c".to_string(), Some(vec![])),
                ("b".to_string(), None),
                ("a".to_string(), Some(b"1".to_vec())),
                ("b".to_string(), None),
            ]
        );
    }
}
