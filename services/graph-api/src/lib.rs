//! graph-api: the code graph over HTTP.
//!
//! Mutations go through the shared Function library (one atomic call per mutation or batch chunk, each with its
//! CDC events); queries read the graph hashes directly. Handlers live in `routes/`, one file per resource; the
//! read side is `store`; every error is `codegraph_shared::http::ApiError`. Who may call what is `auth` (scopes
//! per route group, the CSRF guard), the request limits are `limits`.

pub mod auth;
pub mod cypher;
pub mod extract;
pub mod intel;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod observe;
pub mod routes;
pub mod settings;
pub mod state;
pub mod store;

pub use routes::app;
