//! Redis backends for qwasr runtimes.
//!
//! - [`keyvalue`] (cargo feature `keyvalue`): `wasi:keyvalue` (`store`,
//!   `atomics`, `batch`) on a Redis server, one Redis string per bucket and
//!   key. The runtime names it `redis` in qwasr.toml's `[backends]`.
//!
//! Settings come from the manifest's `[backends]` table form and from
//! `REDIS_*` environment variables (see the crate's README); a URL's password
//! never reaches a log line or an error the guest sees.

#![deny(missing_docs)]

#[cfg(feature = "keyvalue")]
pub mod keyvalue;
