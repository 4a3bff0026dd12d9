//! A small Bolt client (the protocol of Memgraph and Neo4j), written here because the crates that exist bring a TLS
//! stack and much more than a sink needs: [`packstream`] values, [`message`] framing, one [`connection`] (handshake,
//! HELLO/LOGON, pipelined requests with deadlines) and the [`client`] on top (queries, batch transactions, RESET
//! after a failure, reconnection). Plain TCP, or TLS ([`tls`]: `bolt+s://`, `bolt+ssc://` and their `neo4j+`
//! forms).

pub mod client;
pub mod connection;
pub mod message;
pub mod packstream;
pub mod target;
pub mod tls;

pub use client::{BoltClient, QueryResult, Statement};
pub use packstream::Value;
pub use target::BoltTarget;

/// What went wrong talking to a Bolt server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoltError {
    /// The connection failed or missed a deadline.
    #[error("bolt i/o: {0}")]
    Io(String),
    /// The server said something this client does not understand (or accepts no version it speaks).
    #[error("bolt protocol: {0}")]
    Protocol(String),
    /// The server refused a request.
    #[error("{request} failed: {code}: {message}")]
    Failure { request: String, code: String, message: String },
    /// The server skipped a request because an earlier one in the pipeline failed.
    #[error("{0} ignored after an earlier failure")]
    Ignored(String),
}

impl BoltError {
    /// The connection cannot be used again.
    pub fn breaks_connection(&self) -> bool {
        match self {
            BoltError::Io(_) | BoltError::Protocol(_) => true,
            // A session that failed to log in is defunct.
            BoltError::Failure { request, .. } => request == "HELLO" || request == "LOGON",
            BoltError::Ignored(_) => false,
        }
    }

    /// Worth retrying later: the server was unreachable or busy, not refusing the statement itself.
    pub fn is_transient(&self) -> bool {
        match self {
            BoltError::Io(_) | BoltError::Protocol(_) => true,
            // A refused login is the configuration's fault, not the statement's.
            BoltError::Failure { request, code, .. } => {
                request == "HELLO"
                    || request == "LOGON"
                    || code.contains("TransientError")
                    || code.contains("Unavailable")
            }
            BoltError::Ignored(_) => false,
        }
    }
}
