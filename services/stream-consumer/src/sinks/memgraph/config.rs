//! `[sinks.memgraph]`: where Memgraph (or another Bolt server) is.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MemgraphSettings {
    /// `bolt://host:port`; empty: the sink is off.
    pub url: String,
    pub user: String,
    pub password: String,
}

impl MemgraphSettings {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}
