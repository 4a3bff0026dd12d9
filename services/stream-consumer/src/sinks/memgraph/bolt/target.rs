//! Where a Bolt server is and how to log in: parsed from `bolt://[user[:password]@]host[:port]` (user and password
//! percent-decoded; `+s`/`+ssc` schemes for TLS), with the timeouts every connection uses.

use std::{path::PathBuf, time::Duration};

/// Default Bolt port.
pub const DEFAULT_PORT: u16 = 7687;

/// `basic` credentials for HELLO/LOGON; none means scheme `none`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub principal: String,
    pub credentials: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("principal", &self.principal).finish_non_exhaustive()
    }
}

/// How the connection is secured, from the URL's scheme (the Neo4j drivers' meaning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// `bolt://`, `neo4j://`, `memgraph://`: plain TCP.
    None,
    /// `bolt+s://`, `neo4j+s://`: TLS, the certificate verified against the system's roots and the CA file, for
    /// the URL's host.
    Verified,
    /// `bolt+ssc://`, `neo4j+ssc://`: TLS, any certificate accepted (encrypted, not authenticated).
    Unverified,
}

/// The schemes understood, and what each means.
const SCHEMES: [(&str, Encryption); 7] = [
    ("bolt://", Encryption::None),
    ("neo4j://", Encryption::None),
    ("memgraph://", Encryption::None),
    ("bolt+s://", Encryption::Verified),
    ("neo4j+s://", Encryption::Verified),
    ("bolt+ssc://", Encryption::Unverified),
    ("neo4j+ssc://", Encryption::Unverified),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoltTarget {
    pub host: String,
    pub port: u16,
    pub encryption: Encryption,
    /// A PEM file of CAs trusted besides the system's roots (`+s` schemes).
    pub ca_file: Option<PathBuf>,
    pub auth: Option<Credentials>,
    pub user_agent: String,
    /// Longest wait for the TCP connection and the handshake.
    pub connect_timeout: Duration,
    /// Longest wait for one read or write (so for one statement's answer).
    pub io_timeout: Duration,
    /// Largest response message accepted (bounded memory).
    pub max_message_bytes: usize,
}

impl BoltTarget {
    /// Parses a `bolt://` URL (also accepted: `neo4j://`, `memgraph://`, which mean the same to this client, and
    /// the TLS schemes `bolt+s://`, `neo4j+s://`, `bolt+ssc://`, `neo4j+ssc://`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (rest, encryption) = SCHEMES
            .iter()
            .find_map(|(scheme, encryption)| url.strip_prefix(scheme).map(|rest| (rest, *encryption)))
            .ok_or_else(|| format!("{url:?} is not a bolt://, bolt+s:// or bolt+ssc:// URL"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
        };
        let auth = match userinfo {
            None => None,
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                Some(Credentials { principal: percent_decode(user)?, credentials: percent_decode(password)? })
            }
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            encryption,
            ca_file: None,
            auth,
            user_agent: format!("codegraph-stream-consumer/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            max_message_bytes: 256 << 20,
        })
    }

    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| format!("bad percent escape in {s:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_credentials() {
        let t = BoltTarget::parse("bolt://memgraph:7688").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.auth), ("memgraph", 7688, None));
        assert_eq!(BoltTarget::parse("bolt://localhost").unwrap().port, DEFAULT_PORT);
        let t = BoltTarget::parse("bolt://ann:p%40ss%3Aword@db.local:7687/ignored").unwrap();
        assert_eq!(t.auth, Some(Credentials { principal: "ann".into(), credentials: "p@ss:word".into() }));
        assert_eq!(t.host, "db.local");
        let t = BoltTarget::parse("bolt://[::1]:9000").unwrap();
        assert_eq!((t.address().as_str(), t.port), ("[::1]:9000", 9000));
        assert!(BoltTarget::parse("redis://x").is_err());
        assert!(BoltTarget::parse("bolt://:7687").is_err());
        assert!(BoltTarget::parse("bolt://h:notaport").is_err());
        assert!(BoltTarget::parse("bolt://u:%zz@h").is_err());
        assert!(!format!("{:?}", BoltTarget::parse("bolt://u:secret@h").unwrap()).contains("secret"));
    }

    #[test]
    fn schemes_say_how_the_connection_is_secured() {
        let enc = |url: &str| BoltTarget::parse(url).unwrap().encryption;
        assert_eq!(enc("bolt://h"), Encryption::None);
        assert_eq!(enc("memgraph://h"), Encryption::None);
        assert_eq!(enc("bolt+s://h"), Encryption::Verified);
        assert_eq!(enc("neo4j+s://u:p@h:7688"), Encryption::Verified);
        assert_eq!(enc("bolt+ssc://h"), Encryption::Unverified);
        assert_eq!(enc("neo4j+ssc://h"), Encryption::Unverified);
        assert_eq!(BoltTarget::parse("neo4j+s://u:p@h:7688").unwrap().port, 7688);
        assert!(BoltTarget::parse("bolt+x://h").is_err());
    }
}
