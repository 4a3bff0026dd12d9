//! The Memgraph sink over Bolt.

mod config;

pub use config::MemgraphSettings;
