//! `wasi:messaging@0.2.0-draft` with `async func`s (feature `async`): WASI
//! 0.3 guests built against the original Qwasr's messaging. `send`,
//! `request`, `reply` and `client.connect` are `async func`s, the
//! `message` and `request-options` methods stay sync, and the guest's
//! `incoming-handler.handle` is an `async func` export.
//!
//! An `async func` runs as a host task beside the guest's other tasks: it
//! reaches the store through its `Accessor` for one table touch at a time,
//! never across an await.

use crate::{Client, Ctx, Error, HasMessaging, Message, RequestOptions, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::Store;
use wasmtime::component::{Accessor, Linker, Resource};

bindgen!(
    "../../wit/flavours/messaging-0.2.0-draft.qwasr-async",
    // `async func`s get `async | store` from bindgen; the sync ones are
    // table look-ups and stay plain `fn`s.
    { default: trappable }
);

/// Runs `handle` on `message` (already in the store's table) in a fresh
/// instance, and keeps the store's event loop going until every task in it
/// has exited: work the guest left running after `handle` returned (a
/// reply, a publish) finishes before the instance goes. The outer error is
/// a trap.
pub(crate) async fn handle<T: Send + 'static>(
    pre: &HandlerPre<T>,
    store: &mut Store<T>,
    message: Resource<Message>,
) -> wasmtime::Result<Result<(), Error>> {
    let handler = pre.instantiate_async(&mut *store).await?;
    let result = store
        .run_concurrent(async |acc| {
            let result = handler
                .wasi_messaging_incoming_handler()
                .call_handle(acc, message)
                .await?;
            std::future::poll_fn(|cx| acc.poll_no_interesting_tasks(cx)).await;
            Ok::<_, wasmtime::Error>(result)
        })
        .await??;
    Ok(result.map_err(from_guest))
}

shared_bindings!(types, request_reply);

impl<T> types::HostClientWithStore<T> for HasMessaging {
    async fn connect(mut s: &Accessor<T, Self>, name: String) -> MsgResult<Resource<Client>> {
        guest(ops::connect(&mut s, name))
    }
}

impl types::HostClient for CtxView<'_, Ctx> {
    fn disconnect(&mut self, c: Resource<Client>) -> MsgResult<()> {
        guest(ops::disconnect(self, &c))
    }

    fn drop(&mut self, c: Resource<Client>) -> Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl<T> producer::HostWithStore<T> for HasMessaging {
    async fn send(
        mut s: &Accessor<T, Self>,
        c: Resource<Client>,
        topic: String,
        message: Resource<Message>,
    ) -> MsgResult<()> {
        guest(ops::send(&mut s, &c, topic, message).await)
    }
}

impl producer::Host for CtxView<'_, Ctx> {}

impl<T> request_reply::HostWithStore<T> for HasMessaging {
    async fn request(
        mut s: &Accessor<T, Self>,
        c: Resource<Client>,
        topic: String,
        message: Resource<Message>,
        options: Option<Resource<RequestOptions>>,
    ) -> MsgResult<Vec<Resource<Message>>> {
        guest(ops::request(&mut s, &c, topic, &message, options).await)
    }

    async fn reply(
        mut s: &Accessor<T, Self>,
        reply_to: Resource<Message>,
        message: Resource<Message>,
    ) -> MsgResult<()> {
        guest(ops::reply(&mut s, &reply_to, message).await)
    }
}

impl request_reply::Host for CtxView<'_, Ctx> {}
