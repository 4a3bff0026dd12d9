//! Sinks: graph databases kept equal to the Redis graph. Each sink lives in its own folder (settings, query
//! builder, backend client, integration test) behind the one small [`Sink`] trait, and is registered by one line
//! of [`registry!`] below: that line gives it its `[sinks.<name>]` settings, start-up, commands and status.
//!
//! What every sink guarantees, so the consumer can deliver at least once, and only the lease holder writes:
//! - [`Sink::apply`] writes a [`Plan`] (the last state of each entity of a batch) and records the plan's last
//!   stream ID, and the ID is recorded only if every write of the plan succeeded;
//! - a write changes an entity only when the event's version is newer than the stored one, so applying an event
//!   twice, or an older version after a newer one, changes nothing;
//! - [`Sink::open`] returns the last recorded ID, and the consumer skips what is at or below it. That is what keeps
//!   a delete from being undone by a replayed older upsert: deletes leave nothing behind to compare versions with;
//! - **fencing**: the sink keeps, beside the recorded ID, the highest lease generation that wrote to the project
//!   (the fence). Every write checks, in the same query or transaction as the writes, that its generation is at
//!   least the fence (then raises the fence to it) and that the recorded ID only grows; otherwise it writes
//!   nothing and answers [`SinkError::Fenced`]. It also checks that the recorded ID is not behind the one the
//!   writer expects ([`Writer::recorded`]), and a project without a record is not written either
//!   ([`SinkError::Lost`] for both): the sink lost data, and only [`Sink::reset`] starts a record again.

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
    /// A writer with a newer lease generation has written, or the recorded ID is past the plan's: this writer
    /// lost the project and must stop; nothing was written.
    #[error("fenced out: {0}")]
    Fenced(String),
    /// The sink holds no record of the project (emptied, restarted without its data): nothing was written; the
    /// project must be rebuilt.
    #[error("the sink lost the project's data: {0}")]
    Lost(String),
}

/// Who writes a plan: the lease generation (fencing token) and the stream ID the writer knows the sink recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writer {
    pub generation: u64,
    pub recorded: StreamId,
}

/// A graph database fed from the CDC streams. `generation` is the writer's lease generation (fencing token).
pub trait Sink: Send + Sync + 'static {
    /// Short name: the consumer group is `sink:<name>`, dead letters go to `…:cdc:dlq:<name>`.
    fn name(&self) -> &'static str;

    /// Prepares the project's graph (indexes), raises its fence to `generation`, and returns the last stream ID
    /// applied to it; `None`: the sink holds no record of the project (never fed, or it lost its data).
    fn open(
        &self,
        project: &ProjectName,
        generation: u64,
    ) -> impl Future<Output = Result<Option<StreamId>, SinkError>> + Send;

    /// Applies `plan` and records `plan.last_id` as applied, fenced as the module says.
    fn apply(
        &self,
        project: &ProjectName,
        writer: Writer,
        plan: &Plan,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Empties the project's graph and records `0-0` under `generation` (before a rebuild). Fenced like
    /// [`Sink::apply`], except that a missing record is what it repairs.
    fn reset(&self, project: &ProjectName, generation: u64) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The last stream ID the sink recorded for the project, read without writing; `None`: no record.
    fn recorded(&self, project: &ProjectName) -> impl Future<Output = Result<Option<StreamId>, SinkError>> + Send;

    /// True when the backend answers.
    fn ping(&self) -> impl Future<Output = bool> + Send;
}

/// Why a sink's guard refused a write, from the record it found there (fence, recorded ID); `last`: the plan's
/// last ID.
fn refusal(fence: u64, recorded: StreamId, writer: Writer, last: Option<StreamId>) -> SinkError {
    if fence > writer.generation {
        SinkError::Fenced(format!("generation {} wrote after this writer's {}", fence, writer.generation))
    } else if last.is_some_and(|last| recorded > last) {
        SinkError::Fenced(format!("the recorded ID {recorded} is past this plan's {}", last.expect("some")))
    } else if recorded < writer.recorded {
        SinkError::Lost(format!("the recorded ID {recorded} is behind the {} written before", writer.recorded))
    } else {
        SinkError::Unavailable(format!("the record changed while writing (fence {fence}, recorded {recorded})"))
    }
}

/// Registers the sinks: `name: Variant(SinkType, SettingsType)`. The name is the sink's `[sinks.<name>]` table and
/// its [`Sink::name`]; the settings type has `enabled()` (a URL is set), the sink type `new(&settings)`.
macro_rules! registry {
    ($($name:ident: $variant:ident($sink:ty, $settings:ty)),+ $(,)?) => {
        /// `[sinks.*]`: one table per registered sink.
        #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct SinksSettings {
            $(pub $name: $settings,)+
        }

        /// Names of the registered sinks.
        pub const SINK_NAMES: &[&str] = &[$(stringify!($name)),+];

        /// One of the registered sinks (one per process and name, so their sizes may differ).
        #[allow(clippy::large_enum_variant)]
        pub enum AnySink {
            $($variant($sink),)+
        }

        impl AnySink {
            /// The sinks switched on by their settings (a URL).
            pub fn enabled(settings: &SinksSettings) -> Result<Vec<AnySink>, SinkError> {
                let mut sinks = Vec::new();
                $(
                    if settings.$name.enabled() {
                        sinks.push(AnySink::$variant(<$sink>::new(&settings.$name)?));
                    }
                )+
                Ok(sinks)
            }
        }

        impl Sink for AnySink {
            fn name(&self) -> &'static str {
                match self {
                    $(AnySink::$variant(s) => s.name(),)+
                }
            }

            async fn open(&self, project: &ProjectName, generation: u64) -> Result<Option<StreamId>, SinkError> {
                match self {
                    $(AnySink::$variant(s) => s.open(project, generation).await,)+
                }
            }

            async fn apply(&self, project: &ProjectName, writer: Writer, plan: &Plan) -> Result<(), SinkError> {
                match self {
                    $(AnySink::$variant(s) => s.apply(project, writer, plan).await,)+
                }
            }

            async fn reset(&self, project: &ProjectName, generation: u64) -> Result<(), SinkError> {
                match self {
                    $(AnySink::$variant(s) => s.reset(project, generation).await,)+
                }
            }

            async fn recorded(&self, project: &ProjectName) -> Result<Option<StreamId>, SinkError> {
                match self {
                    $(AnySink::$variant(s) => s.recorded(project).await,)+
                }
            }

            async fn ping(&self) -> bool {
                match self {
                    $(AnySink::$variant(s) => s.ping().await,)+
                }
            }
        }
    };
}

registry! {
    falkordb: FalkorDb(falkordb::FalkorDbSink, falkordb::FalkorDbSettings),
    memgraph: Memgraph(memgraph::MemgraphSink, memgraph::MemgraphSettings),
}
