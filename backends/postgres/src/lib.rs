//! PostgreSQL backends for qwasr runtimes.
//!
//! - [`sql`] (cargo feature `sql`): `wasi:sql` on a PostgreSQL server, one
//!   PostgreSQL database per database name the guest opens, each with its
//!   own pool of connections. The runtime names it `postgres` in
//!   qwasr.toml's `[backends]` (`sql = "postgres"` or
//!   `sql = { backend = "postgres", pool-size = 16 }`).
//!
//! Settings come from the manifest's `[backends]` table form and from
//! `POSTGRES_*` environment variables (see the crate's README); a URL's
//! password never reaches a log line or an error the guest sees.

#![deny(missing_docs)]

#[cfg(feature = "sql")]
pub mod sql;
