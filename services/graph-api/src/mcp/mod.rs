//! The Model Context Protocol server: the code graph's queries as MCP tools, its schema and statistics as
//! resources that tell a subscribed client when the graph changed, and analyses with progress and cancellation.
//!
//! Built on the official Rust SDK (`rmcp`). One [`CodeGraphMcp`] per MCP session, over two transports:
//! Streamable HTTP at `/mcp` inside graph-api's router ([`router`], behind the same tokens, Origin rule and
//! request limits as the REST API), and stdio (`graph-api mcp --stdio`, [`serve_stdio`]) for an agent that
//! launches the server itself. Tools call the same code as the REST routes (`routes/`, `store`, `intel`); the
//! files here only translate: `tools` (inputs, answers, errors), `resources` (URIs and their contents), `watch`
//! (CDC events → coalesced `notifications/resources/updated`), `jobs` (a job's `analysis_*` events → progress
//! notifications, MCP cancellation → the admin cancel), `http` (mounting, Origin and Host rules).

mod http;
mod intel_tools;
mod jobs;
mod resources;
mod server;
mod sessions;
mod tools;
mod watch;

pub use http::{close_http_sessions, router};
pub use server::{Access, CodeGraphMcp};

use rmcp::ServiceExt;

use crate::state::AppState;

/// Serves one MCP session on stdin/stdout until the client closes it. Every tool is allowed: whoever can start
/// this process can already reach Redis with its configuration.
pub async fn serve_stdio(state: AppState) -> anyhow::Result<()> {
    let service = CodeGraphMcp::new(state, Access::Full).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
