//! `wasi:config` (`@0.2.0-rc.1`) for qwasr runtimes: the values the guest
//! reads through `wasi:config/store`.
//!
//! The embedded backend serves the manifest's `[config]` table. An operator
//! overrides a value without rebuilding with the environment variable
//! `QWASR_CONFIG_<KEY>` (key upper-cased, `-` and `.` as `_`) or the
//! runtime's `--config KEY=VALUE` flag, which wins over both.

#![deny(missing_docs)]

use anyhow::Result;
use qwasr_kernel::{BackendConfig, CtxView, View};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/config-0.2.0-rc.1",
        world: "wasi:config/imports",
        imports: { default: trappable },
        anyhow: true,
    });
}

use generated::wasi::config::store;

/// Per-store `wasi:config` state: the resolved values.
#[derive(Clone, Default)]
pub struct Ctx {
    values: Arc<BTreeMap<String, String>>,
}

impl Ctx {
    /// A context serving exactly `values`.
    pub fn new(values: BTreeMap<String, String>) -> Ctx {
        Ctx {
            values: Arc::new(values),
        }
    }
}

/// The embedded backend: values from the manifest, environment and command line.
pub mod embedded {
    use super::*;

    /// Resolves the values: manifest `[config]`, then `QWASR_CONFIG_<KEY>`, then `--config`.
    pub async fn connect(cfg: &BackendConfig) -> Result<Ctx> {
        let mut values = BTreeMap::new();
        for (key, value) in &cfg.options {
            let value = cfg
                .get(key, &env_name(key))?
                .unwrap_or_else(|| value.clone());
            values.insert(key.clone(), value);
        }
        for (key, value) in &cfg.overrides {
            values.insert(key.clone(), value.clone());
        }
        Ok(Ctx::new(values))
    }
}

/// The environment variable that overrides config key `key`.
pub fn env_name(key: &str) -> String {
    let mut name = String::from("QWASR_CONFIG_");
    name.extend(key.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

/// Adds `wasi:config/store` to the linker.
pub fn add_to_linker<T: View<Ctx> + 'static>(linker: &mut Linker<T>) -> Result<()> {
    store::add_to_linker::<T, HasConfig>(linker, |t| t.view())?;
    Ok(())
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = CtxView<'a, Ctx>;
}

impl store::Host for CtxView<'_, Ctx> {
    fn get(&mut self, key: String) -> Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.ctx.values.get(&key).cloned()))
    }

    fn get_all(&mut self) -> Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self
            .ctx
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::env_name;

    #[test]
    fn env_names_are_upper_snake_case() {
        assert_eq!(env_name("api-url"), "QWASR_CONFIG_API_URL");
        assert_eq!(env_name("db.host"), "QWASR_CONFIG_DB_HOST");
    }
}
