//! `[sinks.falkordb]`: where FalkorDB is and how its graphs are named.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct FalkorDbSettings {
    /// `redis://host:port` of a FalkorDB server; empty: the sink is off.
    pub url: String,
    /// The graph of project `p` is `<graph_prefix><p>`.
    pub graph_prefix: String,
}

impl Default for FalkorDbSettings {
    fn default() -> Self {
        Self { url: String::new(), graph_prefix: "codegraph_".into() }
    }
}

impl FalkorDbSettings {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}
