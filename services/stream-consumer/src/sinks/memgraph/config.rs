//! `[sinks.memgraph]`: where Memgraph (or another Bolt server) is, and how long to wait for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bolt::{
    target::{Credentials, Encryption},
    tls, BoltTarget,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct MemgraphSettings {
    /// `bolt://[user:password@]host:port`; empty: the sink is off. TLS: `bolt+s://` (or `neo4j+s://`) verifies the
    /// server's certificate for the URL's host; `bolt+ssc://` (`neo4j+ssc://`) encrypts without verifying it.
    pub url: String,
    /// PEM file of a private CA trusted besides the system's roots, for `bolt+s://`. Empty: the system's roots.
    pub ca_file: String,
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
            ca_file: String::new(),
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

    /// The Bolt target: the URL's host and credentials (else `user`/`password`), TLS and the timeouts. Refuses a
    /// CA file that cannot be read, or one given with a URL that does not verify certificates (it would do nothing).
    pub fn target(&self) -> Result<BoltTarget, String> {
        let mut target = BoltTarget::parse(&self.url)?;
        if !self.ca_file.is_empty() {
            if target.encryption != Encryption::Verified {
                return Err("ca_file is set but the URL is not bolt+s:// or neo4j+s://".into());
            }
            target.ca_file = Some(self.ca_file.clone().into());
        }
        tls::connector(&target)?;
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

    #[test]
    fn a_ca_file_needs_a_verifying_url_and_must_be_readable() {
        let with = |url: &str, ca: &str| MemgraphSettings { url: url.into(), ca_file: ca.into(), ..Default::default() };
        assert!(with("bolt://mg", "/ca.pem").target().unwrap_err().contains("not bolt+s://"));
        assert!(with("bolt+ssc://mg", "/ca.pem").target().is_err());
        assert!(with("bolt+s://mg", "/no/such/ca.pem").target().unwrap_err().contains("/no/such/ca.pem"));
        assert!(with("bolt+s://mg", "").target().is_ok(), "the system's roots");
    }
}
