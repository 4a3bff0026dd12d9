//! stream-consumer: keeps graph databases (FalkorDB, Memgraph) equal to the graph in Redis by applying each
//! project's CDC stream (`code_graph:{p}:cdc`) to them.
//!
//! # Delivery
//! Each sink reads through its own consumer group, `sink:<name>` ([`stream::group_name`]), with a consumer name
//! that is stable per process slot (the host or pod name, or `[consumer] name`). An entry is acknowledged only
//! after the sink committed it together with its stream ID ([`sinks::Sink`]); a sink skips what is at or below the
//! ID it recorded, and writes only versions newer than what it holds, so redelivery changes nothing.
//!
//! # Change sets
//! An entry is one change set (everything one graph mutation changed) or a single event (job events,
//! `graph_reset`, and every graph change of a stream written before change sets); both are read as a
//! `ChangeSet`. A set is applied to each sink whole, in one commit — one FalkorDB query, one Memgraph transaction
//! — of whole sets of at most `batch_size` changes (a larger set alone), so a reader of the sink never sees part
//! of one ([`sinks::plan`], [`run::worker`]). The recorded position stays an entry ID; dead letters, redrive,
//! rebuilds and replays handle whole entries too.
//!
//! # Sharing the work without breaking order: per-project ownership
//! Order matters per entity, and one project's stream is the unit of order, so each (project, sink) is applied by
//! exactly one process at a time: the holder of the lease `code_graph:{p}:cdc:owner:<sink>` ([`run::lease`]), a
//! key holding the owner's consumer name, set with `PX` and renewed every tick by a compare-and-extend script. The
//! processes of a sink heartbeat into `code_graph:cdc:consumers:<sink>` and each takes its fair share of the
//! projects listed in `code_graph:projects` ([`run::ownership`]); projects that appear are picked up at the next
//! tick.
//! A process that dies stops renewing; after the lease expires another takes the project. Before reading new
//! entries, the new owner waits until no other consumer has entries pending, claiming them with `XAUTOCLAIM` once
//! they have been idle longer than `claim_idle_ms` (longer than the slowest batch), and applies them first, so
//! nothing is lost and nothing overtakes an older event ([`run::worker`]). A restarted process (same name) takes
//! its own lease and pending entries back at once. The janitor repeats the claim periodically as a safety net.
//!
//! # Fencing
//! A lease can expire under an owner that is only paused (or whose Bolt statement is slow), so the lease alone
//! does not keep two writers apart. Every take of a lease increments its generation (`…:owner:<sink>:generation`,
//! in the same script), and every sink write carries it: the sink refuses, in the same query or transaction as
//! the writes, a generation older than the newest it has seen and a recorded ID that would go backwards
//! ([`sinks`]). A fenced-out worker stops; `replay` and `dlq redrive` take the lease with a new generation too.
//!
//! # A sink that lost its data
//! When the sink has no record of a project, or one behind what the group acknowledged (a FalkorDB restarted
//! without its data, `FLUSHALL`ed), found when a worker starts or by a commit, the worker rebuilds the project in
//! that sink: from the stream when it still holds every entry, else from a snapshot ([`rebuild`]).
//!
//! # Failures
//! A sink that is unreachable makes the worker re-read the same entries after a pause, without limit. An entry the
//! sink refuses (or that cannot be decoded) is delivered again until `max_deliveries`, then moved whole with its
//! error to `code_graph:{p}:cdc:dlq:<sink>` and acknowledged ([`dead_letters`]); `stream-consumer dlq list|redrive`
//! shows and re-applies them. `stream-consumer replay` rebuilds a sink from the stream or a snapshot ([`commands::replay`]).
//!
//! # Trimming
//! The owner trims the stream (`XTRIM MINID ~`) below what every group acknowledged and below the retention
//! window ([`run::trim`]). Trimming by others (the writers' `MAXLEN` cap) can still remove entries a group never
//! got: the worker sees it (the group's lag exceeds the stream's length), never skips them silently, reports
//! `resync_required` and rebuilds the project from a snapshot ([`run::worker`], [`stream::gap`]).
//!
//! # Layout
//! [`run`]: the service (app, ownership, lease, worker, trim, status, http). [`commands`]: the command line
//! (replay, dlq redrive and list). Shared by both: [`rebuild`] (snapshot and stream into a sink), [`snapshot`],
//! [`stream`] (the group's reads), [`dead_letters`], [`progress`], [`settings`], and [`sinks`] (one folder per
//! sink, registered in one line). `test_support` exists only for tests and the benchmark (feature `testing`).

pub mod commands;
pub mod dead_letters;
pub mod progress;
pub mod rebuild;
pub mod run;
pub mod settings;
pub mod sinks;
pub mod snapshot;
pub mod stream;
#[cfg(any(test, feature = "testing"))]
pub mod test_support;
