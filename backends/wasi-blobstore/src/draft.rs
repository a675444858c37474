//! `wasi:blobstore@0.2.0-draft` (feature `sync`): WASI 0.2 guests.

use crate::{Container, Ctx, HasBlobstore, IncomingValue, ObjectNames, OutgoingValue, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

mod generated {
    bindgen!(
        ["../../wit/deps/io-0.2.1", "../../wit/deps/blobstore-0.2.0-draft"],
        { default: async | trappable }
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

impl blobstore::Host for CtxView<'_, Ctx> {
    async fn create_container(&mut self, name: String) -> Op<Resource<Container>> {
        ops::create_container(self, name).await
    }

    async fn get_container(&mut self, name: String) -> Op<Resource<Container>> {
        ops::get_container(self, name).await
    }

    async fn delete_container(&mut self, name: String) -> Op<()> {
        ops::delete_container(self, name).await
    }

    async fn container_exists(&mut self, name: String) -> Op<bool> {
        ops::container_exists(self, name).await
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Op<()> {
        ops::copy_object(self, src.into(), dest.into()).await
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Op<()> {
        ops::move_object(self, src.into(), dest.into()).await
    }
}

impl container::Host for CtxView<'_, Ctx> {}

impl container::HostContainer for CtxView<'_, Ctx> {
    async fn name(&mut self, c: Resource<Container>) -> Op<String> {
        ops::name(self, &c)
    }

    async fn info(&mut self, c: Resource<Container>) -> Op<types::ContainerMetadata> {
        Ok(ops::info(self, &c).await?.map(Into::into))
    }

    async fn get_data(
        &mut self,
        c: Resource<Container>,
        name: String,
        start: u64,
        end: u64,
    ) -> Op<Resource<IncomingValue>> {
        ops::get_data(self, &c, name, start, end).await
    }

    async fn write_data(
        &mut self,
        c: Resource<Container>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> Op<()> {
        ops::write_data(self, &c, name, &data).await
    }

    async fn list_objects(&mut self, c: Resource<Container>) -> Op<Resource<ObjectNames>> {
        ops::list_objects(self, &c).await
    }

    async fn delete_object(&mut self, c: Resource<Container>, name: String) -> Op<()> {
        ops::delete_object(self, &c, name).await
    }

    async fn delete_objects(&mut self, c: Resource<Container>, names: Vec<String>) -> Op<()> {
        ops::delete_objects(self, &c, names).await
    }

    async fn has_object(&mut self, c: Resource<Container>, name: String) -> Op<bool> {
        ops::has_object(self, &c, name).await
    }

    async fn object_info(
        &mut self,
        c: Resource<Container>,
        name: String,
    ) -> Op<types::ObjectMetadata> {
        Ok(ops::object_info(self, &c, name).await?.map(Into::into))
    }

    async fn clear(&mut self, c: Resource<Container>) -> Op<()> {
        ops::clear(self, &c).await
    }

    async fn drop(&mut self, c: Resource<Container>) -> Result<()> {
        ops::delete(self, c)
    }
}

impl container::HostStreamObjectNames for CtxView<'_, Ctx> {
    async fn read_stream_object_names(
        &mut self,
        names: Resource<ObjectNames>,
        len: u64,
    ) -> Op<(Vec<String>, bool)> {
        ops::read_names(self, &names, len).await
    }

    async fn skip_stream_object_names(
        &mut self,
        names: Resource<ObjectNames>,
        num: u64,
    ) -> Op<(u64, bool)> {
        ops::skip_names(self, &names, num).await
    }

    async fn drop(&mut self, names: Resource<ObjectNames>) -> Result<()> {
        ops::delete(self, names)
    }
}

impl types::Host for CtxView<'_, Ctx> {}

impl types::HostOutgoingValue for CtxView<'_, Ctx> {
    async fn new_outgoing_value(&mut self) -> Result<Resource<OutgoingValue>> {
        ops::new_outgoing_value(self)
    }

    async fn outgoing_value_write_body(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> Result<Result<Resource<DynOutputStream>, ()>> {
        ops::write_body(self, value)
    }

    async fn finish(&mut self, value: Resource<OutgoingValue>) -> Op<()> {
        ops::finish(self, value).await
    }

    async fn drop(&mut self, value: Resource<OutgoingValue>) -> Result<()> {
        ops::drop_outgoing_value(self, value).await
    }
}

impl types::HostIncomingValue for CtxView<'_, Ctx> {
    async fn incoming_value_consume_sync(&mut self, value: Resource<IncomingValue>) -> Op<Vec<u8>> {
        ops::consume_sync(self, value).await
    }

    async fn incoming_value_consume_async(
        &mut self,
        value: Resource<IncomingValue>,
    ) -> Op<Resource<DynInputStream>> {
        ops::consume_async(self, value)
    }

    async fn size(&mut self, value: Resource<IncomingValue>) -> Result<u64> {
        ops::size(self, &value)
    }

    async fn drop(&mut self, value: Resource<IncomingValue>) -> Result<()> {
        ops::delete(self, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CHUNK;
    use bytes::Bytes;
    use qwasr_kernel::{App, BackendConfig, Code, Limits};
    use wasmtime::component::ResourceTable;
    use wasmtime_wasi::p2::StreamError;
    use wasmtime_wasi::p2::bindings::io::streams::HostOutputStream;

    const fn app(names: &'static [(&'static str, &'static [&'static str])], memory: u64) -> App {
        App {
            limits: Limits {
                memory,
                ..Limits::DEFAULT
            },
            names,
            ..App::new("test", Code::Wasm(&[]))
        }
    }

    static OPEN: App = app(&[], Limits::DEFAULT.memory);
    static GRANTED: App = app(
        &[("blobstore", &["granted", "also"])],
        Limits::DEFAULT.memory,
    );
    static SMALL: App = app(&[], 1000);

    /// A request's state over a fresh embedded store.
    struct State {
        ctx: Ctx,
        table: ResourceTable,
        dir: tempfile::TempDir,
    }

    fn config(root: &std::path::Path, app: &'static App) -> BackendConfig {
        BackendConfig {
            data_root: root.to_path_buf(),
            app,
            interface: "blobstore",
            backend: "embedded",
            options: Vec::new(),
            overrides: Vec::new(),
        }
    }

    impl State {
        async fn new(app: &'static App) -> State {
            let dir = tempfile::tempdir().unwrap();
            let ctx = crate::embedded::connect(&config(dir.path(), app))
                .await
                .unwrap();
            State {
                ctx,
                table: ResourceTable::new(),
                dir,
            }
        }

        fn v(&mut self) -> CtxView<'_, Ctx> {
            CtxView {
                ctx: &mut self.ctx,
                table: &mut self.table,
            }
        }

        fn temp_files(&self) -> usize {
            std::fs::read_dir(self.dir.path().join("blobstore/tmp"))
                .unwrap()
                .count()
        }

        async fn container(&mut self, name: &str) -> Resource<Container> {
            blobstore::Host::create_container(&mut self.v(), name.into())
                .await
                .unwrap()
                .unwrap()
        }

        async fn new_value(&mut self) -> Resource<OutgoingValue> {
            types::HostOutgoingValue::new_outgoing_value(&mut self.v())
                .await
                .unwrap()
        }

        async fn body(&mut self, value: &Resource<OutgoingValue>) -> Resource<DynOutputStream> {
            types::HostOutgoingValue::outgoing_value_write_body(&mut self.v(), borrow(value))
                .await
                .unwrap()
                .unwrap()
        }

        async fn write(&mut self, stream: &Resource<DynOutputStream>, data: &[u8]) {
            self.table
                .get_mut(stream)
                .unwrap()
                .blocking_write_and_flush(Bytes::copy_from_slice(data))
                .await
                .unwrap();
        }

        /// Drops a stream the way the kernel's wasi:io does for the guest.
        async fn close(&mut self, stream: Resource<DynOutputStream>) {
            HostOutputStream::drop(&mut self.table, stream)
                .await
                .unwrap();
        }

        async fn write_data(
            &mut self,
            c: &Resource<Container>,
            name: &str,
            value: &Resource<OutgoingValue>,
        ) -> Result<(), String> {
            container::HostContainer::write_data(
                &mut self.v(),
                borrow(c),
                name.into(),
                borrow(value),
            )
            .await
            .unwrap()
        }

        async fn finish(&mut self, value: Resource<OutgoingValue>) -> Result<(), String> {
            types::HostOutgoingValue::finish(&mut self.v(), value)
                .await
                .unwrap()
        }

        async fn get(
            &mut self,
            c: &Resource<Container>,
            name: &str,
            start: u64,
            end: u64,
        ) -> Result<Vec<u8>, String> {
            let value = container::HostContainer::get_data(
                &mut self.v(),
                borrow(c),
                name.into(),
                start,
                end,
            )
            .await
            .unwrap()?;
            types::HostIncomingValue::incoming_value_consume_sync(&mut self.v(), value)
                .await
                .unwrap()
        }

        async fn has(&mut self, c: &Resource<Container>, name: &str) -> bool {
            container::HostContainer::has_object(&mut self.v(), borrow(c), name.into())
                .await
                .unwrap()
                .unwrap()
        }
    }

    fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(r.rep())
    }

    async fn read(
        v: &mut CtxView<'_, Ctx>,
        names: &Resource<ObjectNames>,
        n: u64,
    ) -> (Vec<String>, bool) {
        container::HostStreamObjectNames::read_stream_object_names(v, borrow(names), n)
            .await
            .unwrap()
            .unwrap()
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8).collect()
    }

    #[tokio::test]
    async fn body_written_then_write_data_stores_at_write_data() {
        let mut st = State::new(&OPEN).await;
        let c = st.container("c").await;
        let value = st.new_value().await;
        let body = st.body(&value).await;
        let bytes = data(3 * CHUNK + 17);
        st.write(&body, &bytes).await;
        st.close(body).await;
        assert!(!st.has(&c, "x").await);
        st.write_data(&c, "x", &value).await.unwrap();
        // Stored (and durable) before finish.
        assert_eq!(st.get(&c, "x", 0, u64::MAX).await.unwrap(), bytes);
        st.finish(value).await.unwrap();
        assert_eq!(st.get(&c, "x", 0, u64::MAX).await.unwrap(), bytes);
        assert_eq!(st.temp_files(), 0);
    }

    #[tokio::test]
    async fn write_data_while_the_body_is_open_stores_at_finish() {
        let mut st = State::new(&OPEN).await;
        let c = st.container("c").await;
        let value = st.new_value().await;
        let body = st.body(&value).await;
        st.write_data(&c, "x", &value).await.unwrap();
        let bytes = data(2 * CHUNK);
        st.write(&body, &bytes[..100]).await;
        assert!(!st.has(&c, "x").await);
        st.write(&body, &bytes[100..]).await;
        st.close(body).await;
        assert!(!st.has(&c, "x").await);
        st.finish(value).await.unwrap();
        assert_eq!(st.get(&c, "x", 0, u64::MAX).await.unwrap(), bytes);
        assert_eq!(st.temp_files(), 0);
    }

    #[tokio::test]
    async fn a_value_never_given_a_body_stores_an_empty_object() {
        let mut st = State::new(&OPEN).await;
        let c = st.container("c").await;
        let value = st.new_value().await;
        st.write_data(&c, "empty", &value).await.unwrap();
        assert_eq!(st.get(&c, "empty", 0, 0).await.unwrap(), b"");
        // Too late for a body now, and the name is taken.
        let late = types::HostOutgoingValue::outgoing_value_write_body(&mut st.v(), borrow(&value))
            .await
            .unwrap();
        assert!(late.is_err());
        assert_eq!(
            st.write_data(&c, "other", &value).await.unwrap_err(),
            "write-data was already called for this outgoing-value (object `empty` in container `c`); \
             use a new outgoing-value for another object"
        );
        st.finish(value).await.unwrap();
    }

    #[tokio::test]
    async fn a_value_dropped_without_finish_leaves_nothing() {
        let mut st = State::new(&OPEN).await;
        let c = st.container("c").await;
        // Named while streaming, dropped before finish.
        let value = st.new_value().await;
        let body = st.body(&value).await;
        st.write_data(&c, "x", &value).await.unwrap();
        st.write(&body, &data(CHUNK + 1)).await;
        st.close(body).await;
        assert_eq!(st.temp_files(), 1);
        types::HostOutgoingValue::drop(&mut st.v(), value)
            .await
            .unwrap();
        assert!(!st.has(&c, "x").await);
        assert_eq!(st.temp_files(), 0);
        // Never named.
        let value = st.new_value().await;
        let body = st.body(&value).await;
        st.write(&body, b"lost").await;
        st.close(body).await;
        types::HostOutgoingValue::drop(&mut st.v(), value)
            .await
            .unwrap();
        // Finished without a name.
        let value = st.new_value().await;
        let body = st.body(&value).await;
        st.write(&body, b"lost").await;
        st.close(body).await;
        assert_eq!(
            st.finish(value).await.unwrap_err(),
            "finish was called before write-data named the object: nothing was stored"
        );
        let names = container::HostContainer::list_objects(&mut st.v(), borrow(&c))
            .await
            .unwrap()
            .unwrap();
        let (listed, end) =
            container::HostStreamObjectNames::read_stream_object_names(&mut st.v(), names, 10)
                .await
                .unwrap()
                .unwrap();
        assert_eq!((listed.len(), end), (0, true));
        assert_eq!(st.temp_files(), 0);
    }

    #[tokio::test]
    async fn the_body_is_taken_once_and_must_be_dropped_before_finish() {
        let mut st = State::new(&OPEN).await;
        let c = st.container("c").await;
        let value = st.new_value().await;
        let body = st.body(&value).await;
        let again =
            types::HostOutgoingValue::outgoing_value_write_body(&mut st.v(), borrow(&value))
                .await
                .unwrap();
        assert!(again.is_err());
        st.write_data(&c, "x", &value).await.unwrap();
        // The WIT: finishing while the child stream lives traps.
        let own = Resource::<OutgoingValue>::new_own(value.rep());
        assert!(
            types::HostOutgoingValue::finish(&mut st.v(), own)
                .await
                .is_err()
        );
        st.close(body).await;
        st.finish(value).await.unwrap();
        assert_eq!(st.get(&c, "x", 0, 9).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn values_read_whole_or_as_a_chunked_stream() {
        let mut st = State::new(&OPEN).await;
        let c = st.container("c").await;
        let bytes = data(5 * CHUNK + 3);
        let value = st.new_value().await;
        let body = st.body(&value).await;
        st.write(&body, &bytes).await;
        st.close(body).await;
        st.write_data(&c, "x", &value).await.unwrap();
        st.finish(value).await.unwrap();

        let v = container::HostContainer::get_data(&mut st.v(), borrow(&c), "x".into(), 10, 19)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            types::HostIncomingValue::size(&mut st.v(), borrow(&v))
                .await
                .unwrap(),
            10
        );
        let whole = types::HostIncomingValue::incoming_value_consume_sync(&mut st.v(), v)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(whole, &bytes[10..20]);

        let v =
            container::HostContainer::get_data(&mut st.v(), borrow(&c), "x".into(), 0, u64::MAX)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(
            types::HostIncomingValue::size(&mut st.v(), borrow(&v))
                .await
                .unwrap(),
            bytes.len() as u64
        );
        // The snapshot holds even when the object goes away.
        container::HostContainer::delete_object(&mut st.v(), borrow(&c), "x".into())
            .await
            .unwrap()
            .unwrap();
        let stream = types::HostIncomingValue::incoming_value_consume_async(&mut st.v(), v)
            .await
            .unwrap()
            .unwrap();
        let mut read = Vec::new();
        loop {
            match st
                .table
                .get_mut(&stream)
                .unwrap()
                .blocking_read(CHUNK / 2 + 1)
                .await
            {
                Ok(chunk) => {
                    assert!(!chunk.is_empty() && chunk.len() <= CHUNK / 2 + 1);
                    read.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(read, bytes);
        assert!(!st.has(&c, "x").await);
    }

    #[tokio::test]
    async fn consume_sync_refuses_what_an_instance_cannot_hold() {
        let mut st = State::new(&SMALL).await;
        let c = st.container("c").await;
        let value = st.new_value().await;
        let body = st.body(&value).await;
        st.write(&body, &data(2000)).await;
        st.close(body).await;
        st.write_data(&c, "x", &value).await.unwrap();
        assert_eq!(
            st.get(&c, "x", 0, u64::MAX).await.unwrap_err(),
            "the value is 2000 bytes, more than an instance may hold (1000 bytes, [limits] memory): \
             read it with incoming-value-consume-async"
        );
        assert_eq!(st.get(&c, "x", 0, 999).await.unwrap(), data(1000));
        assert_eq!(
            st.get(&c, "x", 2000, 2000).await.unwrap_err(),
            "cannot read bytes 2000..=2000 (inclusive) of object `x` in container `c` (2000 bytes): \
             the start offset is past the end of the object"
        );
    }

    #[tokio::test]
    async fn containers_outside_the_grant_are_refused() {
        let mut st = State::new(&GRANTED).await;
        let denied =
            "container `other` is not granted: add it to [blobstore] containers in qwasr.toml";
        let c = st.container("granted").await;
        st.container("also").await;
        let v = &mut st.v();
        assert_eq!(
            blobstore::Host::create_container(v, "other".into())
                .await
                .unwrap()
                .unwrap_err(),
            denied
        );
        assert_eq!(
            blobstore::Host::get_container(v, "other".into())
                .await
                .unwrap()
                .unwrap_err(),
            denied
        );
        assert_eq!(
            blobstore::Host::delete_container(v, "other".into())
                .await
                .unwrap()
                .unwrap_err(),
            denied
        );
        assert_eq!(
            blobstore::Host::container_exists(v, "other".into())
                .await
                .unwrap()
                .unwrap_err(),
            denied
        );
        let id = |c: &str| types::ObjectId {
            container: c.into(),
            object: "x".into(),
        };
        assert_eq!(
            blobstore::Host::copy_object(v, id("granted"), id("other"))
                .await
                .unwrap()
                .unwrap_err(),
            denied
        );
        assert_eq!(
            blobstore::Host::move_object(v, id("other"), id("granted"))
                .await
                .unwrap()
                .unwrap_err(),
            denied
        );
        assert!(
            blobstore::Host::container_exists(v, "also".into())
                .await
                .unwrap()
                .unwrap()
        );
        let value = st.new_value().await;
        st.write_data(&c, "x", &value).await.unwrap();
        let v = &mut st.v();
        blobstore::Host::copy_object(v, id("granted"), id("also"))
            .await
            .unwrap()
            .unwrap();
        // The store itself was never asked about `other`.
        assert!(!st.dir.path().join("blobstore/containers/cother").exists());
    }

    #[tokio::test]
    async fn containers_and_objects_through_the_bindings() {
        let mut st = State::new(&OPEN).await;
        let v = &mut st.v();
        assert_eq!(
            blobstore::Host::get_container(v, "c".into())
                .await
                .unwrap()
                .unwrap_err(),
            "container `c` does not exist"
        );
        assert!(
            !blobstore::Host::container_exists(v, "c".into())
                .await
                .unwrap()
                .unwrap()
        );
        let c = st.container("c").await;
        let v = &mut st.v();
        assert_eq!(
            blobstore::Host::create_container(v, "c".into())
                .await
                .unwrap()
                .unwrap_err(),
            "container `c` already exists"
        );
        assert_eq!(
            container::HostContainer::name(v, borrow(&c))
                .await
                .unwrap()
                .unwrap(),
            "c"
        );
        let info = container::HostContainer::info(v, borrow(&c))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.name, "c");
        let again = blobstore::Host::get_container(v, "c".into())
            .await
            .unwrap()
            .unwrap();
        let same = container::HostContainer::info(v, borrow(&again))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(same.created_at, info.created_at);
        container::HostContainer::drop(v, again).await.unwrap();

        for i in 0..25 {
            let value = st.new_value().await;
            st.write_data(&c, &format!("{i:02}"), &value).await.unwrap();
            st.finish(value).await.unwrap();
        }
        let v = &mut st.v();
        let meta = container::HostContainer::object_info(v, borrow(&c), "07".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.container.as_str(), meta.size),
            ("07", "c", 0)
        );
        assert!(meta.created_at >= info.created_at);
        assert_eq!(
            container::HostContainer::object_info(v, borrow(&c), "nope".into())
                .await
                .unwrap()
                .unwrap_err(),
            "object `nope` does not exist in container `c`"
        );

        let names = container::HostContainer::list_objects(v, borrow(&c))
            .await
            .unwrap()
            .unwrap();
        let (first, end) = read(v, &names, 10).await;
        assert_eq!((first.len(), end), (10, false));
        let skipped =
            container::HostStreamObjectNames::skip_stream_object_names(v, borrow(&names), 5)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(skipped, (5, false));
        let (rest, end) = read(v, &names, u64::MAX).await;
        assert_eq!((rest.len(), end), (10, true));
        assert_eq!(read(v, &names, 5).await, (vec![], true));
        let skipped =
            container::HostStreamObjectNames::skip_stream_object_names(v, borrow(&names), 5)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(skipped, (0, true));
        container::HostStreamObjectNames::drop(v, names)
            .await
            .unwrap();

        container::HostContainer::delete_objects(
            v,
            borrow(&c),
            vec!["00".into(), "01".into(), "gone".into()],
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!st.has(&c, "00").await);
        assert!(st.has(&c, "02").await);
        let v = &mut st.v();
        container::HostContainer::clear(v, borrow(&c))
            .await
            .unwrap()
            .unwrap();
        assert!(!st.has(&c, "02").await);
        let v = &mut st.v();
        blobstore::Host::delete_container(v, "c".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            container::HostContainer::info(v, borrow(&c))
                .await
                .unwrap()
                .unwrap_err(),
            "container `c` does not exist"
        );
        let value = st.new_value().await;
        assert_eq!(
            st.write_data(&c, "x", &value).await.unwrap_err(),
            "container `c` does not exist"
        );
        // A failed value stays failed.
        assert!(st.finish(value).await.is_err());
        assert_eq!(st.temp_files(), 0);
    }

    #[tokio::test]
    async fn connect_refuses_options() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), &OPEN);
        cfg.options.push(("path".into(), "/x".into()));
        let e = crate::embedded::connect(&cfg).await.err().unwrap();
        assert_eq!(
            e.to_string(),
            "the embedded blobstore backend takes no options, but `path` was given"
        );
    }
}
