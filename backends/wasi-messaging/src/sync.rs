//! `wasi:messaging@0.2.0-draft` with sync WIT functions (WASI 0.2 guests):
//! the `types`, `producer` and `request-reply` imports, and the bindings the
//! subscriber calls `incoming-handler` through.

use crate::{Client, Ctx, Error, HasMessaging, Message, RequestOptions, ops, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::Store;
use wasmtime::component::{Linker, Resource};

bindgen!(
    "../../wit/deps/messaging-0.2.0-draft",
    // Only these wait on the broker; the rest are table look-ups.
    {
        "wasi:messaging/producer.send": async | trappable,
        "wasi:messaging/request-reply.request": async | trappable,
        "wasi:messaging/request-reply.reply": async | trappable,
        default: trappable,
    }
);

/// Runs `handle` on `message` (already in the store's table) in a fresh
/// instance. The outer error is a trap.
pub(crate) async fn handle<T: Send>(
    pre: &HandlerPre<T>,
    store: &mut Store<T>,
    message: Resource<Message>,
) -> wasmtime::Result<Result<(), Error>> {
    let handler = pre.instantiate_async(&mut *store).await?;
    let result = handler
        .wasi_messaging_incoming_handler()
        .call_handle(store, message)
        .await?;
    Ok(result.map_err(from_guest))
}

shared_bindings!(types, request_reply);

impl types::HostClient for CtxView<'_, Ctx> {
    fn connect(&mut self, name: String) -> MsgResult<Resource<Client>> {
        guest(ops::connect(self, name))
    }

    fn disconnect(&mut self, c: Resource<Client>) -> MsgResult<()> {
        guest(ops::disconnect(self, &c))
    }

    fn drop(&mut self, c: Resource<Client>) -> Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl producer::Host for CtxView<'_, Ctx> {
    async fn send(
        &mut self,
        c: Resource<Client>,
        topic: String,
        message: Resource<Message>,
    ) -> MsgResult<()> {
        guest(ops::send(self, &c, topic, message).await)
    }
}

impl request_reply::Host for CtxView<'_, Ctx> {
    async fn request(
        &mut self,
        c: Resource<Client>,
        topic: String,
        message: Resource<Message>,
        options: Option<Resource<RequestOptions>>,
    ) -> MsgResult<Vec<Resource<Message>>> {
        guest(ops::request(self, &c, topic, &message, options).await)
    }

    async fn reply(
        &mut self,
        reply_to: Resource<Message>,
        message: Resource<Message>,
    ) -> MsgResult<()> {
        guest(ops::reply(self, &reply_to, message).await)
    }
}
