//! stream-consumer: keeps graph databases (FalkorDB, Memgraph) equal to the graph in Redis by applying each
//! project's CDC stream (`code_graph:{p}:cdc`) to them.
//!
//! # Delivery
//! Each sink reads through its own consumer group, `sink:<name>` ([`stream::group_name`]), with a consumer name
//! that is stable per process slot (the host or pod name, or `[consumer] name`). An entry is acknowledged only
//! after the sink committed it together with its stream ID ([`sinks::Sink`]); a sink skips what is at or below the
//! ID it recorded, and writes only versions newer than what it holds, so redelivery changes nothing.
//!
//! # Sharing the work without breaking order: per-project ownership
//! Order matters per entity, and one project's stream is the unit of order, so each (project, sink) is applied by
//! exactly one process at a time: the holder of the lease `code_graph:{p}:cdc:owner:<sink>` ([`lease`]), a key
//! holding the owner's consumer name, set with `PX` and renewed every tick by a compare-and-extend script. The
//! processes of a sink heartbeat into `code_graph:cdc:consumers:<sink>` and each takes its fair share of the
//! projects listed in `code_graph:projects` ([`ownership`]); projects that appear are picked up at the next tick.
//! A process that dies stops renewing; after the lease expires another takes the project. Before reading new
//! entries, the new owner waits until no other consumer has entries pending, claiming them with `XAUTOCLAIM` once
//! they have been idle longer than `claim_idle_ms` (longer than the slowest batch), and applies them first, so
//! nothing is lost and nothing overtakes an older event ([`worker`]). A restarted process (same name) takes its
//! own lease and pending entries back at once. The janitor repeats the claim periodically as a safety net.
//!
//! # Failures
//! A sink that is unreachable makes the worker re-read the same entries after a pause, without limit. An event the
//! sink refuses (or that cannot be decoded) is delivered again until `max_deliveries`, then moved with its error to
//! `code_graph:{p}:cdc:dlq:<sink>` and acknowledged ([`dead_letters`]); `stream-consumer dlq list|redrive` shows and
//! re-applies them. `stream-consumer replay` rebuilds a sink from the stream or a snapshot ([`replay`]).
//!
//! # Trimming
//! The owner trims the stream (`XTRIM MINID ~`) below what every group acknowledged and below the retention
//! window ([`trim`]). Trimming by others (the writers' `MAXLEN` cap) can still remove entries a group never got:
//! the worker sees it (the group's lag exceeds the stream's length), never skips them silently, reports
//! `resync_required` and rebuilds the project from a snapshot ([`worker`], [`stream::gap`]).

pub mod app;
pub mod dead_letters;
pub mod http;
pub mod lease;
pub mod ownership;
pub mod progress;
pub mod redrive;
pub mod replay;
pub mod settings;
pub mod sinks;
pub mod snapshot;
pub mod status;
pub mod stream;
pub mod test_support;
pub mod trim;
pub mod worker;
