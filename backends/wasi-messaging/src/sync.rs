//! `wasi:messaging@0.2.0-draft` with sync WIT functions (WASI 0.2 guests):
//! the `types`, `producer` and `request-reply` imports, and the bindings the
//! subscriber calls `incoming-handler` through.

use crate::{Client, Ctx, Error, HasMessaging, Message, RequestOptions, view};
use anyhow::Result;
use qwasr_kernel::{CtxView, View};
use wasmtime::component::{Linker, Resource};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/messaging-0.2.0-draft",
        world: "wasi:messaging/messaging-request-reply",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:messaging/types.client": crate::Client,
            "wasi:messaging/types.message": crate::Message,
            "wasi:messaging/request-reply.request-options": crate::RequestOptions,
        },
        anyhow: true,
    });
}

/// The component's `incoming-handler` export, resolved once.
pub(crate) use generated::MessagingRequestReplyPre as HandlerPre;
use generated::wasi::messaging::{producer, request_reply, types};

pub(crate) fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    types::add_to_linker::<T, HasMessaging>(linker, view::<T>)?;
    producer::add_to_linker::<T, HasMessaging>(linker, view::<T>)?;
    request_reply::add_to_linker::<T, HasMessaging>(linker, view::<T>)?;
    Ok(())
}

/// The guest's error, as the subscriber logs it.
pub(crate) fn from_guest(e: types::Error) -> Error {
    match e {
        types::Error::Timeout => Error::Timeout,
        types::Error::Connection(m) => Error::Connection(m),
        types::Error::PermissionDenied(m) => Error::PermissionDenied(m),
        types::Error::Other(m) => Error::Other(m),
    }
}

fn to_guest(e: Error) -> types::Error {
    match e {
        Error::Timeout => types::Error::Timeout,
        Error::Connection(m) => types::Error::Connection(m),
        Error::PermissionDenied(m) => types::Error::PermissionDenied(m),
        Error::Other(m) => types::Error::Other(m),
    }
}

/// The outer `Result` traps the guest (a bad resource handle); the inner one
/// is the guest's `result<_, error>`.
type MsgResult<T> = Result<Result<T, types::Error>>;

impl types::Host for CtxView<'_, Ctx> {}

impl types::HostClient for CtxView<'_, Ctx> {
    async fn connect(&mut self, name: String) -> MsgResult<Resource<Client>> {
        // One broker behind every name: the name only shows up in errors.
        let client = Client {
            name,
            connected: true,
        };
        Ok(Ok(self.table.push(client)?))
    }

    async fn disconnect(&mut self, c: Resource<Client>) -> MsgResult<()> {
        self.table.get_mut(&c)?.connected = false;
        Ok(Ok(()))
    }

    async fn drop(&mut self, c: Resource<Client>) -> Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl types::HostMessage for CtxView<'_, Ctx> {
    async fn new(&mut self, data: Vec<u8>) -> Result<Resource<Message>> {
        Ok(self.table.push(Message::new(data))?)
    }

    async fn topic(&mut self, m: Resource<Message>) -> Result<Option<String>> {
        Ok(self.table.get(&m)?.topic.clone())
    }

    async fn content_type(&mut self, m: Resource<Message>) -> Result<Option<String>> {
        Ok(self.table.get(&m)?.content_type.clone())
    }

    async fn set_content_type(&mut self, m: Resource<Message>, content_type: String) -> Result<()> {
        self.table.get_mut(&m)?.content_type = Some(content_type);
        Ok(())
    }

    async fn data(&mut self, m: Resource<Message>) -> Result<Vec<u8>> {
        Ok(self.table.get(&m)?.data.clone())
    }

    async fn set_data(&mut self, m: Resource<Message>, data: Vec<u8>) -> Result<()> {
        self.table.get_mut(&m)?.data = data;
        Ok(())
    }

    async fn metadata(&mut self, m: Resource<Message>) -> Result<Option<Vec<(String, String)>>> {
        let metadata = &self.table.get(&m)?.metadata;
        Ok((!metadata.is_empty()).then(|| metadata.clone()))
    }

    async fn add_metadata(
        &mut self,
        m: Resource<Message>,
        key: String,
        value: String,
    ) -> Result<()> {
        self.table.get_mut(&m)?.add_metadata(key, value);
        Ok(())
    }

    async fn set_metadata(
        &mut self,
        m: Resource<Message>,
        meta: Vec<(String, String)>,
    ) -> Result<()> {
        self.table.get_mut(&m)?.metadata = meta;
        Ok(())
    }

    async fn remove_metadata(&mut self, m: Resource<Message>, key: String) -> Result<()> {
        self.table.get_mut(&m)?.remove_metadata(&key);
        Ok(())
    }

    async fn drop(&mut self, m: Resource<Message>) -> Result<()> {
        self.table.delete(m)?;
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
        // The message is the guest's to give away, whatever happens next.
        let message = self.table.delete(message)?;
        if let Err(e) = self.table.get(&c)?.check() {
            return Ok(Err(to_guest(e)));
        }
        let ctx = self.ctx.clone();
        Ok(ctx.send(&topic, message).await.map_err(to_guest))
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
        let options = match options {
            Some(o) => self.table.delete(o)?,
            None => RequestOptions::default(),
        };
        let message = self.table.get(&message)?.clone();
        if let Err(e) = self.table.get(&c)?.check() {
            return Ok(Err(to_guest(e)));
        }
        let ctx = self.ctx.clone();
        let replies = match ctx.request(&topic, message, options).await {
            Ok(replies) => replies,
            Err(e) => return Ok(Err(to_guest(e))),
        };
        let mut handles = Vec::with_capacity(replies.len());
        for reply in replies {
            handles.push(self.table.push(reply)?);
        }
        Ok(Ok(handles))
    }

    async fn reply(
        &mut self,
        reply_to: Resource<Message>,
        message: Resource<Message>,
    ) -> MsgResult<()> {
        let message = self.table.delete(message)?;
        let address = self.table.get(&reply_to)?.reply_to.clone();
        let ctx = self.ctx.clone();
        Ok(ctx
            .reply(address.as_deref(), message)
            .await
            .map_err(to_guest))
    }
}

impl request_reply::HostRequestOptions for CtxView<'_, Ctx> {
    async fn new(&mut self) -> Result<Resource<RequestOptions>> {
        Ok(self.table.push(RequestOptions::default())?)
    }

    async fn set_timeout_ms(&mut self, o: Resource<RequestOptions>, timeout_ms: u32) -> Result<()> {
        self.table.get_mut(&o)?.timeout_ms = Some(timeout_ms);
        Ok(())
    }

    async fn set_expected_replies(
        &mut self,
        o: Resource<RequestOptions>,
        expected: u32,
    ) -> Result<()> {
        self.table.get_mut(&o)?.expected_replies = Some(expected);
        Ok(())
    }

    async fn drop(&mut self, o: Resource<RequestOptions>) -> Result<()> {
        self.table.delete(o)?;
        Ok(())
    }
}
