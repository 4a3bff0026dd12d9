//! `[sinks.memgraph]`: where Memgraph (or another Bolt server) is, and how long to wait for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bolt::{target::Credentials, BoltTarget};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct MemgraphSettings {
    /// `bolt://[user:password@]host:port`; empty: the sink is off.
    pub url: String,
    /// Used when the URL carries no user.
    pub user: String,
    pub password: String,
    pub connect_timeout_ms: u64,
    /// Longest wait for one answer (one batch's transaction).
    pub query_timeout_ms: u64,
    /// Write parameter values into the statement text (`CYPHER name=value … query`) instead of binding them
    /// with Bolt. Only for FalkorDB's Bolt port, which binds parameters by pasting them unescaped into a 4 KiB
    /// buffer; Memgraph binds them properly and needs this off.
    pub inline_parameters: bool,
}

impl Default for MemgraphSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            user: String::new(),
            password: String::new(),
            connect_timeout_ms: 5_000,
            query_timeout_ms: 30_000,
            inline_parameters: false,
        }
    }
}

impl MemgraphSettings {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The Bolt target: the URL's host and credentials (else `user`/`password`) and the timeouts.
    pub fn target(&self) -> Result<BoltTarget, String> {
        let mut target = BoltTarget::parse(&self.url)?;
        if target.auth.is_none() && !self.user.is_empty() {
            target.auth = Some(Credentials { principal: self.user.clone(), credentials: self.password.clone() });
        }
        target.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        target.io_timeout = Duration::from_millis(self.query_timeout_ms);
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_url_else_the_settings() {
        let s = MemgraphSettings { url: "bolt://mg:7687".into(), user: "u".into(), ..Default::default() };
        assert_eq!(s.target().unwrap().auth.unwrap().principal, "u");
        let s = MemgraphSettings { url: "bolt://a:b@mg".into(), user: "u".into(), ..Default::default() };
        assert_eq!(s.target().unwrap().auth.unwrap().principal, "a");
        assert!(MemgraphSettings { url: "bolt://mg".into(), ..Default::default() }.target().unwrap().auth.is_none());
    }
}
