//! The Memgraph sink: the same mapping and guarantees as the FalkorDB sink, over Bolt, all projects in Memgraph's
//! one database (a `project` property on every node). So far this folder holds its settings and its Cypher
//! ([`query`]); the Bolt transport is not written yet, so a configured `CODEGRAPH__SINKS__MEMGRAPH__URL` is logged as an
//! error at start and not fed.

mod config;
pub mod query;

pub use config::MemgraphSettings;
