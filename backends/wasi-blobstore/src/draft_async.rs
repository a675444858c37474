//! `wasi:blobstore@0.2.0-draft` with `async func`s (feature `async`): WASI
//! 0.3 guests built against the original Qwasr's blobstore, whose values
//! still move through `wasi:io@0.2.2` streams (the kernel's, as in `sync`).
//!
//! An `async func` runs as a host task beside the guest's other tasks: it
//! reaches the store through its `Accessor` for one table touch at a time,
//! never across an await. The few functions that are sync in this WIT but
//! wait on the backend (`container.info`, `finish`,
//! `incoming-value-consume-sync`, dropping an `outgoing-value`) block the
//! calling guest while they wait, as a sync call does.

use crate::{Container, Ctx, HasBlobstore, IncomingValue, ObjectNames, OutgoingValue, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Accessor, Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

mod generated {
    bindgen!(
        [
            "../../wit/deps/io-0.2.2",
            "../../wit/flavours/blobstore-0.2.0-draft.qwasr-async",
        ],
        // `async func`s get `async | store` from bindgen; sync functions stay
        // plain `fn`s, except these, which wait on the backend.
        {
            "wasi:blobstore/container.[method]container.info": async | trappable,
            "wasi:blobstore/types.[static]outgoing-value.finish": async | trappable,
            "wasi:blobstore/types.[drop]outgoing-value": async | trappable,
            "wasi:blobstore/types.[static]incoming-value.incoming-value-consume-sync": async | trappable,
            default: trappable,
        }
    );
}

use generated::wasi::blobstore::{blobstore, container, types};

pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    blobstore::add_to_linker::<T, HasBlobstore>(linker, view::<T>)?;
    container::add_to_linker::<T, HasBlobstore>(linker, view::<T>)?;
    types::add_to_linker::<T, HasBlobstore>(linker, view::<T>)?;
    Ok(())
}

type Op<T> = ops::Op<T>;

conversions!(types);

impl<T> blobstore::HostWithStore<T> for HasBlobstore {
    async fn create_container(mut s: &Accessor<T, Self>, name: String) -> Op<Resource<Container>> {
        ops::create_container(&mut s, name).await
    }

    async fn get_container(mut s: &Accessor<T, Self>, name: String) -> Op<Resource<Container>> {
        ops::get_container(&mut s, name).await
    }

    async fn delete_container(mut s: &Accessor<T, Self>, name: String) -> Op<()> {
        ops::delete_container(&mut s, name).await
    }

    async fn container_exists(mut s: &Accessor<T, Self>, name: String) -> Op<bool> {
        ops::container_exists(&mut s, name).await
    }

    async fn copy_object(
        mut s: &Accessor<T, Self>,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> Op<()> {
        ops::copy_object(&mut s, src.into(), dest.into()).await
    }

    async fn move_object(
        mut s: &Accessor<T, Self>,
        src: types::ObjectId,
        dest: types::ObjectId,
    ) -> Op<()> {
        ops::move_object(&mut s, src.into(), dest.into()).await
    }
}

impl blobstore::Host for CtxView<'_, Ctx> {}

impl<T> container::HostContainerWithStore<T> for HasBlobstore {
    async fn get_data(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Op<Resource<IncomingValue>> {
        ops::get_data(&mut s, &c, name, start, end).await
    }

    async fn write_data(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> Op<()> {
        ops::write_data(&mut s, &c, name, &data).await
    }

    async fn list_objects(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
    ) -> Op<Resource<ObjectNames>> {
        ops::list_objects(&mut s, &c).await
    }

    async fn delete_object(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
        name: String,
    ) -> Op<()> {
        ops::delete_object(&mut s, &c, name).await
    }

    async fn delete_objects(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
        names: Vec<String>,
    ) -> Op<()> {
        ops::delete_objects(&mut s, &c, names).await
    }

    async fn has_object(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
        name: String,
    ) -> Op<bool> {
        ops::has_object(&mut s, &c, name).await
    }

    async fn object_info(
        mut s: &Accessor<T, Self>,
        c: Resource<Container>,
        name: String,
    ) -> Op<types::ObjectMetadata> {
        Ok(ops::object_info(&mut s, &c, name).await?.map(Into::into))
    }

    async fn clear(mut s: &Accessor<T, Self>, c: Resource<Container>) -> Op<()> {
        ops::clear(&mut s, &c).await
    }
}

impl container::Host for CtxView<'_, Ctx> {}

impl container::HostContainer for CtxView<'_, Ctx> {
    fn name(&mut self, c: Resource<Container>) -> Op<String> {
        ops::name(self, &c)
    }

    async fn info(&mut self, c: Resource<Container>) -> Op<types::ContainerMetadata> {
        Ok(ops::info(self, &c).await?.map(Into::into))
    }

    fn drop(&mut self, c: Resource<Container>) -> Result<()> {
        ops::delete(self, c)
    }
}

impl<T> container::HostStreamObjectNamesWithStore<T> for HasBlobstore {
    async fn read_stream_object_names(
        mut s: &Accessor<T, Self>,
        names: Resource<ObjectNames>,
        len: u64,
    ) -> Op<(Vec<String>, bool)> {
        ops::read_names(&mut s, &names, len).await
    }

    async fn skip_stream_object_names(
        mut s: &Accessor<T, Self>,
        names: Resource<ObjectNames>,
        num: u64,
    ) -> Op<(u64, bool)> {
        ops::skip_names(&mut s, &names, num).await
    }
}

impl container::HostStreamObjectNames for CtxView<'_, Ctx> {
    fn drop(&mut self, names: Resource<ObjectNames>) -> Result<()> {
        ops::delete(self, names)
    }
}

impl types::Host for CtxView<'_, Ctx> {}

impl<T> types::HostOutgoingValueWithStore<T> for HasBlobstore {
    async fn outgoing_value_write_body(
        mut s: &Accessor<T, Self>,
        value: Resource<OutgoingValue>,
    ) -> Result<Result<Resource<DynOutputStream>, ()>> {
        ops::write_body(&mut s, value)
    }
}

impl types::HostOutgoingValue for CtxView<'_, Ctx> {
    fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        ops::new_outgoing_value(self)
    }

    async fn finish(&mut self, value: Resource<OutgoingValue>) -> Op<()> {
        ops::finish(self, value).await
    }

    async fn drop(&mut self, value: Resource<OutgoingValue>) -> Result<()> {
        ops::drop_outgoing_value(self, value).await
    }
}

impl<T> types::HostIncomingValueWithStore<T> for HasBlobstore {
    async fn incoming_value_consume_async(
        mut s: &Accessor<T, Self>,
        value: Resource<IncomingValue>,
    ) -> Op<Resource<DynInputStream>> {
        ops::consume_async(&mut s, value)
    }
}

impl types::HostIncomingValue for CtxView<'_, Ctx> {
    async fn incoming_value_consume_sync(&mut self, value: Resource<IncomingValue>) -> Op<Vec<u8>> {
        ops::consume_sync(self, value).await
    }

    fn size(&mut self, value: Resource<IncomingValue>) -> Result<u64> {
        ops::size(self, &value)
    }

    fn drop(&mut self, value: Resource<IncomingValue>) -> Result<()> {
        ops::delete(self, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blobstore::HostWithStore as _;
    use container::{HostContainerWithStore as _, HostStreamObjectNamesWithStore as _};
    use qwasr_kernel::testing::in_store;
    use qwasr_kernel::{App, BackendConfig, Code, Limits};
    use std::collections::BTreeSet;

    static APP: App = App {
        limits: Limits {
            instances: 1,
            ..Limits::DEFAULT
        },
        concurrency: true,
        ..App::new("test", Code::Wasm(&[]))
    };

    /// A fresh embedded backend in `dir`.
    async fn connect(dir: &std::path::Path, app: &'static App) -> Ctx {
        let cfg = BackendConfig {
            data_root: dir.to_path_buf(),
            app,
            interface: "blobstore",
            backend: "embedded",
            options: Vec::new(),
            overrides: Vec::new(),
        };
        crate::embedded::connect(&cfg).await.unwrap()
    }

    fn borrow<R: 'static>(r: &Resource<R>) -> Resource<R> {
        Resource::new_borrow(r.rep())
    }

    type Has = HasBlobstore;

    #[tokio::test]
    async fn overlapping_calls_do_not_hold_the_store_and_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        in_store::<_, Has, _>(connect(dir.path(), &APP).await, async |acc| {
            let c = Has::create_container(acc, "c".into())
                .await
                .unwrap()
                .unwrap();
            let value = acc
                .with(|mut a| ops::new_outgoing_value(&mut a.get()))
                .unwrap();
            // Both run at once on one value: one stores it, the other is
            // told it is taken, whichever step the first one is at.
            let write = |name: &str| Has::write_data(acc, borrow(&c), name.into(), borrow(&value));
            let (a, b) = tokio::join!(write("a"), write("b"));
            assert_eq!(a.unwrap(), Ok(()));
            assert_eq!(
                b.unwrap().unwrap_err(),
                "write-data was already called for this outgoing-value (object `a` in \
                 container `c`); use a new outgoing-value for another object"
            );
            let has = |name: &str| Has::has_object(acc, borrow(&c), name.into());
            assert_eq!(has("a").await.unwrap(), Ok(true));
            assert_eq!(has("b").await.unwrap(), Ok(false));

            // Three reads of one listing at once take turns.
            for i in 0..25 {
                let backend = acc.with(|mut a| a.get().ctx.backend.clone());
                let writer = backend.writer().await.unwrap();
                writer.commit("c", &format!("{i:02}")).await.unwrap();
            }
            let names = Has::list_objects(acc, borrow(&c)).await.unwrap().unwrap();
            let read = || Has::read_stream_object_names(acc, borrow(&names), 10);
            let (x, y, z) = tokio::join!(read(), read(), read());
            let mut seen = BTreeSet::new();
            let mut sizes = Vec::new();
            for (got, _) in [x, y, z].map(|r| r.unwrap().unwrap()) {
                sizes.push(got.len());
                seen.extend(got);
            }
            sizes.sort();
            assert_eq!(sizes, [6, 10, 10]);
            assert_eq!(seen.len(), 26, "25 names and `a`, each once");
            acc.with(|mut a| {
                let mut v = a.get();
                container::HostStreamObjectNames::drop(&mut v, names).unwrap();
                let name = container::HostContainer::name(&mut v, borrow(&c)).unwrap();
                assert_eq!(name, Ok("c".into()));
            });
        })
        .await;
    }

    #[tokio::test]
    async fn grants_and_errors_read_as_in_the_sync_flavour() {
        static GRANTED: App = App {
            names: &[("blobstore", &["granted"])],
            ..APP
        };
        let dir = tempfile::tempdir().unwrap();
        in_store::<_, Has, _>(connect(dir.path(), &GRANTED).await, async |acc| {
            let denied = "container `other` is not granted: add it to [blobstore] \
                          containers in qwasr.toml";
            assert_eq!(
                Has::create_container(acc, "other".into())
                    .await
                    .unwrap()
                    .unwrap_err(),
                denied
            );
            assert_eq!(
                Has::get_container(acc, "granted".into())
                    .await
                    .unwrap()
                    .unwrap_err(),
                "container `granted` does not exist"
            );
        })
        .await;
    }
}
