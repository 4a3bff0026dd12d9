//! ws-gateway: fans the CDC events of Code Graph Live out to browsers over WebSocket.
//!
//! Map: [`routes`] (HTTP surface) → [`session`] (one connection: reading, [`writer`] for writing) → [`client`]
//! (a client's [`outbox`], filter and per-project feed) ← [`fanout`] (the one Pub/Sub connection and the project
//! rooms) and [`catch_up`] (resume from the stream, read with `codegraph_shared::stream`). [`gateway`] holds the
//! shared state, [`budget`] the bytes queued for all clients together, [`status`] the counters, [`drain`] the
//! graceful shutdown. The wire format is in [`protocol`] and [`gateway_event`]; [`filter`] and [`access`] decide
//! what a client may see and whether it may connect.

pub mod access;
pub mod budget;
pub mod catch_up;
pub mod client;
pub mod drain;
pub mod fanout;
pub mod filter;
pub mod gateway;
pub mod gateway_event;
pub mod outbox;
pub mod protocol;
pub mod registry;
pub mod routes;
pub mod session;
pub mod settings;
pub mod status;
pub mod writer;
