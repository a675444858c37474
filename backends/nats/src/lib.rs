//! NATS backends for qwasr runtimes, one module per interface, each behind
//! the cargo feature of the same name:
//!
//! - [`keyvalue`] (`wasi:keyvalue`): one JetStream key-value bucket per guest
//!   bucket.
//! - [`blobstore`] (`wasi:blobstore`): one JetStream object store per guest
//!   container.
//! - [`messaging`] (`wasi:messaging`): core NATS subjects; the replicas of an
//!   app share a queue group, so each message is handled once.
//!
//! Each module's `connect` opens its own `async_nats::Client` from the
//! `NATS_*` settings (see the README for the table); the client reconnects
//! by itself when the server comes back, and every operation is bounded by
//! `NATS_TIMEOUT`, so an outage gives errors, never a hang.

#![deny(missing_docs)]

#[cfg(feature = "blobstore")]
pub mod blobstore;
// Each module uses part of what these share.
#[cfg_attr(
    not(all(feature = "keyvalue", feature = "blobstore", feature = "messaging")),
    allow(dead_code)
)]
mod conn;
#[cfg(feature = "keyvalue")]
pub mod keyvalue;
#[cfg(feature = "messaging")]
pub mod messaging;
#[cfg(any(feature = "keyvalue", feature = "blobstore"))]
mod names;
#[cfg(test)]
#[cfg_attr(
    not(all(feature = "keyvalue", feature = "blobstore", feature = "messaging")),
    allow(dead_code)
)]
mod testing;
