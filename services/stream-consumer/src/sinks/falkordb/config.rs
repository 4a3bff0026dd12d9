//! `[sinks.falkordb]`: where FalkorDB is and how its graphs are named.

use codegraph_shared::redis_handle::RedisTls;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct FalkorDbSettings {
    /// `redis://host:port` of a FalkorDB server, or `rediss://` for TLS (certificate verified); empty: the sink is
    /// off.
    pub url: String,
    /// PEM file of the private CA of FalkorDB's certificate (`rediss://` only; replaces the system's roots for
    /// FalkorDB). Its own setting, not Redis's: the two may be signed by different CAs.
    pub ca_file: String,
    /// PEM client certificate and key, for a FalkorDB that requires mutual TLS. Empty: none.
    pub cert_file: String,
    pub key_file: String,
    /// The graph of project `p` is `<graph_prefix><p>`.
    pub graph_prefix: String,
}

impl Default for FalkorDbSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            graph_prefix: "codegraph_".into(),
        }
    }
}

impl FalkorDbSettings {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    pub fn tls(&self) -> RedisTls {
        RedisTls::from_paths(&self.ca_file, &self.cert_file, &self.key_file)
    }
}
