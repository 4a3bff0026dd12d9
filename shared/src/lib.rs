//! What every Code Graph Live service shares.
//!
//! Services depend on this crate and never on each other: the only thing between them is Redis. This crate fixes
//! the names and formats that must agree across services (see `docs/DESIGN.md`):
//! configuration ([`settings`]), logs and traces ([`telemetry`]), the CDC event envelope ([`event`]), the graph
//! entities ([`graph`]), project names ([`project`]), every Redis key and channel ([`names`]), the Redis Function
//! library that performs every mutation together with its event ([`functions`]), the lazily connecting Redis
//! handle ([`redis_handle`]), leases with generations ([`lease`]), reading the streams ([`stream`]: entries, info, retention and gaps), the HTTP
//! pieces every service serves ([`http`]: error shape, `/metrics`, graceful serving) and the shutdown signal
//! ([`shutdown`]).
//!
//! With the `testing` feature, which only tests enable (every crate's `[dev-dependencies]`), [`testing`] starts
//! real servers for integration tests.

pub mod auth;
pub mod event;
pub mod functions;
pub mod graph;
pub mod http;
pub mod lease;
pub mod names;
pub mod paths;
pub mod project;
pub mod pubsub;
pub mod redis_handle;
pub mod settings;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
