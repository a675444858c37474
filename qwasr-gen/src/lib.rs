//! qwasr-gen: builds a tailored native runtime for a WASI component.
//!
//! The pipeline is a chain of plain values, each made from the one before:
//!
//! ```text
//! app.wasm ──► Component ──► Plan ──► Files ──► cargo build ──► ./app
//! qwasr.toml ─┘  catalog ────┘
//! ```
//!
//! [`component::Component`] is what the binary says it imports and exports;
//! [`plan::Plan`] is which crate and backend serve each import and which
//! server runs each export; [`emit::Files`] is the host crate; [`build`]
//! runs cargo on it. `qwasr-gen plan --json` prints the plan.

#![deny(missing_docs)]

pub mod build;
pub mod catalog;
pub mod cli;
pub mod component;
pub mod emit;
pub mod manifest;
pub mod plan;
pub mod wit;
