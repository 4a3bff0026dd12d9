//! Sinks: graph databases kept equal to the Redis graph. Each sink lives in its own folder (settings, query
//! builder, backend client, integration test) behind the one small [`Sink`] trait; adding a sink touches no other.
//!
//! What every sink guarantees, so the consumer can deliver at least once:
//! - [`Sink::apply`] writes a [`Plan`] (the last state of each entity of a batch) and records the plan's last
//!   stream ID, and the ID is recorded only if every write of the plan succeeded;
//! - a write changes an entity only when the event's version is newer than the stored one, so applying an event
//!   twice, or an older version after a newer one, changes nothing;
//! - [`Sink::open`] returns the last recorded ID, and the consumer skips what is at or below it. That is what keeps
//!   a delete from being undone by a replayed older upsert: deletes leave nothing behind to compare versions with.

pub mod falkordb;
pub mod mapping;
pub mod memgraph;
pub mod plan;

use std::future::Future;

use codegraph_shared::{event::StreamId, project::ProjectName};

pub use plan::Plan;

/// Why a sink could not apply a plan.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// The backend is unreachable or busy: retry the same plan later; the events are not at fault.
    #[error("sink unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the writes: some event of the plan cannot be applied as it is.
    #[error("sink refused the batch: {0}")]
    Rejected(String),
}

/// A graph database fed from the CDC streams.
pub trait Sink: Send + Sync + 'static {
    /// Short name: the consumer group is `sink:<name>`, dead letters go to `…:cdc:dlq:<name>`.
    fn name(&self) -> &'static str;

    /// Prepares the project's graph (indexes) and returns the last stream ID applied to it.
    fn open(&self, project: &ProjectName) -> impl Future<Output = Result<Option<StreamId>, SinkError>> + Send;

    /// Applies `plan` and records `plan.last_id` as applied.
    fn apply(&self, project: &ProjectName, plan: &Plan) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Removes the project's graph and its recorded ID (before a replay from scratch).
    fn clear(&self, project: &ProjectName) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// True when the backend answers.
    fn ping(&self) -> impl Future<Output = bool> + Send;
}
