//! `wasi:keyvalue@0.2.0-draft2` for WASI 0.3 guests: the proposal's `draft2`
//! with every function an `async func`.
//!
//! Each call runs as a host task in the store's event loop, so a guest task
//! waiting on the backend does not hold up the guest's other tasks. The
//! resource drops are plain (sync) functions in this WIT and stay sync here.

use crate::{Bucket, Cas, Ctx, HasKeyValue, store_glue, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Accessor, Linker, Resource};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/flavours/keyvalue-0.2.0-draft2.qwasr-async",
        world: "wasi:keyvalue/imports",
        // `async func`s are bound as concurrent host functions whatever this
        // says; the rest (the drops) stay sync.
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::Bucket,
            "wasi:keyvalue/atomics.cas": crate::Cas,
        },
        anyhow: true,
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

store_glue!(link add_to_linker: store, atomics, batch);

store_glue!(errors);

impl<T> store::HostWithStore<T> for HasKeyValue {
    store_glue!(open [acc: &Accessor<T, Self>] acc);
}

impl<T> store::HostBucketWithStore<T> for HasKeyValue {
    store_glue!(bucket [acc: &Accessor<T, Self>] acc);
    store_glue!(list-keys [acc: &Accessor<T, Self>] acc);
}

impl<T> atomics::HostWithStore<T> for HasKeyValue {
    store_glue!(atomics [acc: &Accessor<T, Self>] acc);
}

impl<T> atomics::HostCasWithStore<T> for HasKeyValue {
    store_glue!(cas [acc: &Accessor<T, Self>] acc);
}

impl<T> batch::HostWithStore<T> for HasKeyValue {
    store_glue!(get-many [acc: &Accessor<T, Self>] acc);
    store_glue!(batch writes [acc: &Accessor<T, Self>] acc);
}

impl store::Host for CtxView<'_, Ctx> {}
impl atomics::Host for CtxView<'_, Ctx> {}
impl batch::Host for CtxView<'_, Ctx> {}

impl store::HostBucket for CtxView<'_, Ctx> {
    fn drop(&mut self, b: Resource<Bucket>) -> Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl atomics::HostCas for CtxView<'_, Ctx> {
    fn drop(&mut self, cas: Resource<Cas>) -> Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{backends, borrow, connected, drain, numbered};
    use qwasr_kernel::testing::{Bare, in_store};

    type Acc = Accessor<Bare<Ctx>, HasKeyValue>;

    async fn open(acc: &Acc, name: &str) -> Resource<Bucket> {
        let b = store::HostWithStore::open(acc, name.into()).await;
        b.unwrap().unwrap()
    }

    #[tokio::test]
    async fn an_unlisted_bucket_is_access_denied() {
        let (_dir, ctx) = connected("embedded", true).await;
        in_store::<_, HasKeyValue, _>(ctx, async |acc| {
            let denied = store::HostWithStore::open(acc, "nope".into()).await;
            assert!(matches!(denied.unwrap(), Err(store::Error::AccessDenied)));
            open(acc, "allowed").await;
        })
        .await;
    }

    #[tokio::test]
    async fn values_and_counters_round_trip_on_both_backends() {
        let dir = tempfile::tempdir().unwrap();
        for ctx in backends(dir.path()).await {
            in_store::<_, HasKeyValue, _>(ctx, async |acc| {
                let b = open(acc, "b").await;
                let set = store::HostBucketWithStore::set(acc, borrow(&b), "k".into(), vec![7]);
                set.await.unwrap().unwrap();
                let got = store::HostBucketWithStore::get(acc, borrow(&b), "k".into()).await;
                assert_eq!(got.unwrap().unwrap(), Some(vec![7]));
                let del = store::HostBucketWithStore::delete(acc, borrow(&b), "k".into());
                del.await.unwrap().unwrap();
                let there = store::HostBucketWithStore::exists(acc, borrow(&b), "k".into());
                assert!(!there.await.unwrap().unwrap());

                for want in [5, -2] {
                    let n = atomics::HostWithStore::increment(acc, borrow(&b), "n".into(), want);
                    let n = n.await.unwrap().unwrap();
                    assert_eq!(n, if want == 5 { 5 } else { 3 });
                }
                let got = store::HostBucketWithStore::get(acc, borrow(&b), "n".into()).await;
                assert_eq!(got.unwrap().unwrap(), Some(b"3".to_vec()));
                let set = store::HostBucketWithStore::set(acc, borrow(&b), "n".into(), vec![0xff]);
                set.await.unwrap().unwrap();
                let bad = atomics::HostWithStore::increment(acc, borrow(&b), "n".into(), 1).await;
                let Err(store::Error::Other(e)) = bad.unwrap() else {
                    panic!("a non-decimal counter must be an error");
                };
                assert!(e.contains("not a decimal counter"), "{e}");
                acc.with(|mut a| store::HostBucket::drop(&mut a.get(), b))
                    .unwrap();
            })
            .await;
        }
    }

    #[tokio::test]
    async fn batches_and_string_cursors_page_through_every_key() {
        let dir = tempfile::tempdir().unwrap();
        for ctx in backends(dir.path()).await {
            in_store::<_, HasKeyValue, _>(ctx, async |acc| {
                let b = open(acc, "b").await;
                let want = numbered(2500);
                let kvs = want.iter().map(|k| (k.clone(), k.as_bytes().to_vec()));
                let set = batch::HostWithStore::set_many(acc, borrow(&b), kvs.collect());
                set.await.unwrap().unwrap();
                let listed = drain(async |cursor| {
                    let page = store::HostBucketWithStore::list_keys(acc, borrow(&b), cursor);
                    let page = page.await.unwrap().unwrap();
                    (page.keys, page.cursor)
                });
                assert_eq!(listed.await, (want, 3));

                let keys = ["k00001", "missing"].map(String::from).to_vec();
                let got = batch::HostWithStore::get_many(acc, borrow(&b), keys.clone());
                let got = got.await.unwrap().unwrap();
                assert_eq!(got, [Some(("k00001".into(), b"k00001".to_vec())), None]);
                let del = batch::HostWithStore::delete_many(acc, borrow(&b), keys.clone());
                del.await.unwrap().unwrap();
                let got = batch::HostWithStore::get_many(acc, borrow(&b), keys);
                assert_eq!(got.await.unwrap().unwrap(), [None, None]);
            })
            .await;
        }
    }

    #[tokio::test]
    async fn a_failed_swap_hands_back_a_fresh_handle() {
        let (_dir, ctx) = connected("embedded", false).await;
        in_store::<_, HasKeyValue, _>(ctx, async |acc| {
            let b = open(acc, "b").await;
            let cas = atomics::HostCasWithStore::new(acc, borrow(&b), "k".into()).await;
            let cas = cas.unwrap().unwrap();
            let set =
                store::HostBucketWithStore::set(acc, borrow(&b), "k".into(), b"theirs".into());
            set.await.unwrap().unwrap();
            let swap = atomics::HostWithStore::swap(acc, cas, b"mine".to_vec()).await;
            let Err(atomics::CasError::CasFailed(fresh)) = swap.unwrap() else {
                panic!("a swap against a moved value must fail with a fresh handle");
            };
            let seen = atomics::HostCasWithStore::current(acc, borrow_cas(&fresh)).await;
            assert_eq!(seen.unwrap().unwrap(), Some(b"theirs".to_vec()));
            let swap = atomics::HostWithStore::swap(acc, fresh, b"mine".to_vec()).await;
            swap.unwrap().unwrap();
            let now = store::HostBucketWithStore::get(acc, borrow(&b), "k".into()).await;
            assert_eq!(now.unwrap().unwrap(), Some(b"mine".to_vec()));

            // The swap consumed its handle: using it again is a bad handle, a trap.
            let gone = Resource::<Cas>::new_own(b.rep() + 100);
            assert!(
                atomics::HostWithStore::swap(acc, gone, vec![])
                    .await
                    .is_err()
            );
            let stale = Resource::<Bucket>::new_borrow(b.rep() + 100);
            assert!(
                store::HostBucketWithStore::get(acc, stale, "k".into())
                    .await
                    .is_err()
            );
        })
        .await;
    }

    fn borrow_cas(c: &Resource<Cas>) -> Resource<Cas> {
        Resource::new_borrow(c.rep())
    }
}
