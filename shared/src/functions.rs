//! The Redis Function library (`functions.lua`) and the typed calls into it.
//!
//! Every graph mutation goes through [`GraphWriter::mutate`]: one `FCALL cg_mutate` that checks all operations,
//! applies them, bumps each entity's version, and XADDs everything it changed to the project's CDC stream as one
//! change set and publishes it, in one atomic step (state first, the entry last, so a runtime error never leaves
//! an event without its state). No Rust code writes graph state or events any other way. A caller with more than
//! one call's worth of operations splits them with [`calls`]: each call stays under [`MAX_OPS_PER_CALL`] and
//! [`MAX_CHANGE_SET_BYTES`], and is one atomic change set.
//!
//! The stream is kept near the writer's length cap without ever trimming what a consumer group still needs; a
//! stream a lagging group holds above its cap is recorded ([`cap_hold`]). Trimming below what every group has
//! acknowledged is [`trim_stream`], one atomic `FCALL cg_trim`.
//!
//! Admin work is bounded per call: [`GraphWriter::reset`] is O(1) inside Redis (a generation switch) and leaves
//! the old graph to [`sweep`], a bounded step per call; a node delete takes at most [`MAX_CASCADE`] relationships
//! with it in one call, and [`GraphWriter::detach`] / [`GraphWriter::mutate_detaching`] delete larger cascades
//! in chunks first, each one change set.

use std::{collections::HashMap, time::Duration};

use redis::{aio::ConnectionLike, ErrorKind, RedisError, ServerErrorKind, Value};

use crate::{
    event::StreamId,
    graph::{Node, Relationship},
    names::{Generation, RedisNames, PROJECTS_KEY},
};

/// The library source, loaded with `FUNCTION LOAD`.
pub const SOURCE: &str = include_str!("functions.lua");

/// The version this build carries (the `LIBRARY_VERSION` of [`SOURCE`]).
pub fn library_version() -> i64 {
    SOURCE
        .lines()
        .find_map(|l| l.trim().strip_prefix("local LIBRARY_VERSION = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("functions.lua declares LIBRARY_VERSION")
}

/// Loads the library unless Redis already has this version or a newer one.
///
/// Safe when several services start at once: `FUNCTION LOAD REPLACE` is atomic and they all load the same code.
/// A service never replaces a newer library with its older one.
pub async fn ensure_loaded<C: ConnectionLike + Send>(conn: &mut C) -> Result<(), RedisError> {
    let loaded: Result<i64, RedisError> = redis::cmd("FCALL_RO").arg("cg_version").arg(0).query_async(conn).await;
    match loaded {
        Ok(v) if v >= library_version() => return Ok(()),
        Ok(_) => {}
        Err(e) if is_function_missing(&e) => {}
        Err(e) => return Err(e),
    }
    redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(SOURCE).query_async::<String>(conn).await?;
    tracing::info!(version = library_version(), "loaded the codegraph Function library");
    Ok(())
}

fn is_function_missing(e: &RedisError) -> bool {
    e.to_string().contains("Function not found") || e.to_string().contains("function not found")
}

/// True when the error means Redis could not be reached or is not serving (→ 503, retry later), as opposed to a
/// reply that says the request was wrong.
pub fn is_unavailable(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    let unserved = |k: Option<ServerErrorKind>| {
        matches!(
            k,
            Some(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::Moved
            )
        )
    };
    // A transaction or pipeline aborted because its node is not serving (a cluster mid-failover).
    let aborted = || e.clone().into_server_errors().is_some_and(|errs| errs.iter().any(|(_, se)| unserved(se.kind())));
    aborted()
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            // A cluster none of whose nodes (or not the slot's) can be reached.
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                )
        )
}

/// What an operation requires of the entity's current state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expect {
    /// Anything (an upsert).
    #[default]
    Any,
    /// It must not exist (a create).
    Absent,
    /// It must exist at this version (optimistic concurrency for read-modify-write).
    Version(u64),
}

/// One graph mutation.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    UpsertNode(Node, Expect),
    UpsertRelationship(Relationship, Expect),
    DeleteNode(String, Expect),
    DeleteRelationship(String, Expect),
}

/// What became of one mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Updated,
    Unchanged,
    Deleted,
    NotFound,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Deleted => "deleted",
            Self::NotFound => "not_found",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Outcome {
    pub status: Status,
    /// The entity's version after the operation.
    pub version: u64,
    /// The stream ID of the change set that carries its change, when it changed something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Its change's position in that change set (entry ID + index name the change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_index: Option<u32>,
    /// Relationships deleted together with a node (each a change of the same change set, before the node's).
    #[serde(skip_serializing_if = "is_zero")]
    pub cascaded: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a call was refused or failed. Refusals (everything but `Redis`) changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum MutationError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Dangling(String),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

impl MutationError {
    /// True when the call was refused because its node deletes would take more than [`MAX_CASCADE`]
    /// relationships with them (code `CASCADE`; nothing was written): delete them first ([`GraphWriter::detach`]).
    pub fn is_cascade_refusal(&self) -> bool {
        matches!(self, Self::Redis(e) if e.code() == Some("CASCADE"))
    }

    fn from_redis(e: RedisError) -> Self {
        let detail = || without_script_position(e.detail().unwrap_or_default()).to_owned();
        match e.code() {
            Some("CONFLICT") => Self::Conflict(detail()),
            Some("NOTFOUND") => Self::NotFound(detail()),
            Some("DANGLING") => Self::Dangling(detail()),
            _ => Self::Redis(e),
        }
    }
}

/// An error's text without the position Redis appends to errors raised by a Function
/// (` script: cg_mutate, on @user_function:42.`): clients get the message, not the library's insides.
fn without_script_position(detail: &str) -> &str {
    match detail.rfind(" script: ") {
        Some(at) if detail[at..].contains(", on @user_function:") => &detail[..at],
        _ => detail,
    }
}

/// Channel command: `PUBLISH` on a single Redis, `SPUBLISH` (sharded) on a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    #[default]
    Classic,
    Sharded,
}

impl PublishMode {
    fn command(self) -> &'static str {
        match self {
            Self::Classic => "PUBLISH",
            Self::Sharded => "SPUBLISH",
        }
    }
}

/// Writes one project's graph and events through the Function library.
#[derive(Clone, Debug)]
pub struct GraphWriter {
    names: RedisNames,
    max_stream_len: u64,
    publish: PublishMode,
    replica_ack: Option<ReplicaAck>,
}

/// How many replicas must have a write before the call returns (`WAIT`), and for how long to wait for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAck {
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// Marks the error of a write that fewer replicas than required acknowledged in time (see [`is_unacknowledged`]).
const NOT_ACKNOWLEDGED: &str = "write not acknowledged by enough replicas";

/// True for the error [`GraphWriter`] returns when a write was applied on the primary but fewer replicas than
/// [`ReplicaAck::replicas`] acknowledged it in time (also [`is_unavailable`]: the request is answered 503).
pub fn is_unacknowledged(e: &RedisError) -> bool {
    e.to_string().contains(NOT_ACKNOWLEDGED)
}

/// Operations per `FCALL` when a caller hands over more: each chunk is atomic on its own.
pub const MAX_OPS_PER_CALL: usize = 1000;

/// Most relationships one `cg_mutate` call deletes together with the nodes it deletes (`MAX_CASCADE` in
/// `functions.lua`), and the chunk [`GraphWriter::detach`] deletes per call: about 2 ms of Redis time (a
/// relationship delete costs Redis about 18 µs; see `admin_bench` in graph-api's `tests/bounded.rs`). A call over
/// it is refused before it writes anything ([`MutationError::is_cascade_refusal`]).
pub const MAX_CASCADE: usize = 100;

/// How many of a project's jobs its index (`RedisNames::recent_jobs`) keeps: `cg_emit` drops the oldest once
/// it is 100 over (`RECENT_JOBS_KEPT` in `functions.lua`).
pub const RECENT_JOBS_KEPT: usize = 1000;

/// How many times a delete detaches its nodes again when writers keep adding relationships to them.
const DETACH_ATTEMPTS: usize = 8;

/// Node ids of an old generation that one `cg_sweep` call looks at (two adjacency sets each): below 1 ms.
pub const SWEEP_BUDGET: usize = 100;

/// What [`GraphWriter::detach`] deleted before the node itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detached {
    /// Relationships deleted.
    pub relationships: u64,
    /// The change sets that carry their deletes, in order (each at most [`MAX_CASCADE`] changes).
    pub change_sets: Vec<String>,
}

impl Detached {
    fn add(&mut self, other: Detached) {
        self.relationships += other.relationships;
        self.change_sets.extend(other.change_sets);
    }
}

/// The size a call's change set may reach, estimated from its operations' data: 256 KiB keeps one entry well
/// below what a WebSocket client, a Pub/Sub output buffer or a sink transaction takes in one piece, and is ~500
/// typical code-graph upserts. A call with one operation larger than this is still one call (a node's data is
/// bounded by the API); the cascade of a node delete adds its relationships' changes beyond the estimate.
pub const MAX_CHANGE_SET_BYTES: usize = 256 * 1024;

/// What one operation adds to its change set, about: its data, id and the change's envelope.
pub fn change_size(op: &Mutation) -> usize {
    const ENVELOPE: usize = 96;
    ENVELOPE
        + match op {
            Mutation::UpsertNode(n, _) => n.id.len() + n.canonical_json().len(),
            Mutation::UpsertRelationship(r, _) => r.id.len() + r.canonical_json().len(),
            Mutation::DeleteNode(id, _) | Mutation::DeleteRelationship(id, _) => 2 * id.len() + 64,
        }
}

/// Splits `ops` into consecutive calls of at most `max_ops` operations (capped at [`MAX_OPS_PER_CALL`]) and about
/// [`MAX_CHANGE_SET_BYTES`] of changes each, in order; every call is one atomic change set.
pub fn calls(ops: &[Mutation], max_ops: usize) -> Vec<&[Mutation]> {
    calls_by(ops, max_ops, |_| None::<()>)
}

/// Like [`calls`], and what belongs together stays together: `group` names an operation's group (e.g. the file
/// it belongs to; `None`: no group), and a run of consecutive operations of one group goes into one call whole,
/// with whole runs of other groups packed beside it while both bounds allow. Only a run larger than the bounds
/// alone is split. So one file's update is one change set, and many small files share a few.
pub fn calls_by<G: PartialEq>(
    ops: &[Mutation],
    max_ops: usize,
    group: impl Fn(&Mutation) -> Option<G>,
) -> Vec<&[Mutation]> {
    let max_ops = max_ops.clamp(1, MAX_OPS_PER_CALL);
    let sizes: Vec<usize> = ops.iter().map(change_size).collect();
    let mut out = Vec::new();
    // The call being filled: ops[start..end], `bytes` of changes.
    let (mut start, mut end, mut bytes) = (0, 0, 0);
    while end < ops.len() {
        // The run of one group beginning at `end`.
        let g = group(&ops[end]);
        let mut run_end = end + 1;
        while run_end < ops.len() && g.is_some() && group(&ops[run_end]) == g {
            run_end += 1;
        }
        let run_bytes: usize = sizes[end..run_end].iter().sum();
        let fits = |n: usize, b: usize| n <= max_ops && b <= MAX_CHANGE_SET_BYTES;
        if fits(run_end - start, bytes + run_bytes) {
            (end, bytes) = (run_end, bytes + run_bytes);
            continue;
        }
        if end > start {
            out.push(&ops[start..end]);
            (start, bytes) = (end, 0);
        }
        if fits(run_end - start, run_bytes) {
            (end, bytes) = (run_end, run_bytes);
            continue;
        }
        // A run larger than one call: split it by the bounds; its tail stays open for what follows.
        for i in end..run_end {
            if i > start && !fits(i + 1 - start, bytes + sizes[i]) {
                out.push(&ops[start..i]);
                (start, bytes) = (i, 0);
            }
            bytes += sizes[i];
        }
        end = run_end;
    }
    if start < ops.len() {
        out.push(&ops[start..]);
    }
    out
}

impl GraphWriter {
    /// `max_stream_len` caps the CDC stream's length (0: no cap). The cap is approximate: it is enforced once per
    /// 100 to 1,000 new entries (a tenth of the cap), in whole stream nodes, and never trims an entry a consumer
    /// group has pending or has not been delivered yet (such a stream is recorded, see [`cap_hold`]).
    pub fn new(names: RedisNames, max_stream_len: u64, publish: PublishMode) -> Self {
        Self { names, max_stream_len, publish, replica_ack: None }
    }

    /// Every call waits, after the Function call and on the same connection, until `replicas` replicas have it
    /// (`WAIT replicas timeout_ms`); fewer in time is an error ([`is_unacknowledged`]). 0 replicas: no wait.
    pub fn with_replica_ack(mut self, replicas: u32, timeout_ms: u64) -> Self {
        self.replica_ack = (replicas > 0).then_some(ReplicaAck { replicas, timeout_ms });
        self
    }

    /// Runs a Function call of this writer, followed by `WAIT` when replica acknowledgement is on.
    async fn call<C: ConnectionLike + Send, T: redis::FromRedisValue>(
        &self,
        conn: &mut C,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let Some(ack) = self.replica_ack else { return call_function(conn, cmd).await };
        // One pipeline, so the WAIT goes to the node (and connection) the Function call went to.
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone()).cmd("WAIT").arg(ack.replicas).arg(ack.timeout_ms);
        let (reply, acked): (T, u32) = match pipe.query_async(conn).await {
            Err(e) if is_function_missing(&e) => {
                load_missing(conn).await?;
                pipe.query_async(conn).await?
            }
            other => other?,
        };
        if acked < ack.replicas {
            return Err(RedisError::from((
                ErrorKind::Server(ServerErrorKind::TryAgain),
                NOT_ACKNOWLEDGED,
                format!("{acked} of {} replicas within {} ms", ack.replicas, ack.timeout_ms),
            )));
        }
        Ok(reply)
    }

    pub fn names(&self) -> &RedisNames {
        &self.names
    }

    fn common_args(&self, cmd: &mut redis::Cmd, traceparent: Option<&str>) {
        cmd.arg(1)
            .arg(self.names.prefix())
            .arg(self.names.project().as_str())
            .arg(self.max_stream_len)
            .arg(self.publish.command())
            .arg(traceparent.unwrap_or(""));
    }

    /// Applies `ops` (at most [`MAX_OPS_PER_CALL`]; see [`calls`]) atomically: all of them with their change set
    /// (one stream entry, none when nothing changed), or — when one is refused — none of them and no event.
    pub async fn mutate<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        ops: &[Mutation],
        traceparent: Option<&str>,
    ) -> Result<Vec<Outcome>, MutationError> {
        assert!(ops.len() <= MAX_OPS_PER_CALL, "split mutations into chunks of MAX_OPS_PER_CALL");
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("cg_mutate");
        self.common_args(&mut cmd, traceparent);
        cmd.arg(ops.len());
        for op in ops {
            push_op(&mut cmd, op);
        }
        let flat: Vec<String> = self.call(conn, &cmd).await.map_err(MutationError::from_redis)?;
        let outcomes = parse_outcomes(&flat);
        if outcomes.iter().any(|o| o.event_id.is_some()) {
            self.register_project(conn).await?;
        }
        Ok(outcomes)
    }

    /// Emits an event that changes no graph state (analysis progress…). `entity_kind` is e.g. `job`; the data
    /// must be a JSON object.
    pub async fn emit<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        event_type: crate::event::EventType,
        entity_kind: &str,
        entity_id: &str,
        data: &serde_json::Value,
        traceparent: Option<&str>,
    ) -> Result<String, RedisError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("cg_emit");
        self.common_args(&mut cmd, traceparent);
        cmd.arg(event_type.as_str()).arg(entity_kind).arg(entity_id).arg(data.to_string());
        let id = self.call(conn, &cmd).await?;
        self.register_project(conn).await?;
        Ok(id)
    }

    /// Like [`GraphWriter::mutate`], and a call refused because its node deletes would cascade over
    /// [`MAX_CASCADE`] relationships is applied anyway, in bounded steps: the relationships of every node it
    /// deletes go first ([`GraphWriter::detach`], change sets of their own, each leaving a valid graph), then the
    /// call is made again. Those relationship deletes stay even if the call is then refused for another reason
    /// (each was a valid change on its own).
    pub async fn mutate_detaching<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        ops: &[Mutation],
        traceparent: Option<&str>,
    ) -> Result<(Vec<Outcome>, Detached), MutationError> {
        let mut detached = Detached::default();
        for _ in 0..DETACH_ATTEMPTS {
            match self.mutate(conn, ops, traceparent).await {
                Err(e) if e.is_cascade_refusal() => {
                    let deleted: Vec<&String> = ops
                        .iter()
                        .filter_map(|op| match op {
                            Mutation::DeleteNode(id, _) => Some(id),
                            _ => None,
                        })
                        .collect();
                    // Only the nodes that have relationships (two calls each, at least).
                    let (_, sizes): (Generation, Vec<u64>) = read_at_generation(conn, &self.names, |pipe, g| {
                        for id in &deleted {
                            pipe.scard(self.names.outgoing(g, id)).scard(self.names.incoming(g, id));
                        }
                    })
                    .await?;
                    for (id, sides) in deleted.into_iter().zip(sizes.chunks_exact(2)) {
                        if sides[0] + sides[1] > 0 {
                            detached.add(self.detach(conn, id, traceparent).await?);
                        }
                    }
                }
                other => return other.map(|outcomes| (outcomes, detached)),
            }
        }
        // Writers kept adding relationships faster than they went: give up with the refusal.
        self.mutate(conn, ops, traceparent).await.map(|outcomes| (outcomes, detached))
    }

    /// Deletes the relationships of a node (not the node), at most [`MAX_CASCADE`] per call, each call one change
    /// set: one walk over its outgoing and incoming sets. Relationships added during the walk may stay.
    pub async fn detach<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        node_id: &str,
        traceparent: Option<&str>,
    ) -> Result<Detached, RedisError> {
        let mut done = Detached::default();
        for direction in ["out", "in"] {
            let mut cursor = "0".to_owned();
            loop {
                let mut cmd = redis::cmd("FCALL");
                cmd.arg("cg_detach");
                self.common_args(&mut cmd, traceparent);
                cmd.arg(node_id).arg(direction).arg(&cursor).arg(MAX_CASCADE);
                let (entry, next, deleted): (String, String, u64) = self.call(conn, &cmd).await?;
                if !entry.is_empty() {
                    done.change_sets.push(entry);
                }
                done.relationships += deleted;
                cursor = next;
                if cursor == "0" {
                    break;
                }
            }
        }
        if !done.change_sets.is_empty() {
            self.register_project(conn).await?;
        }
        Ok(done)
    }

    /// Removes the project's whole graph and emits `graph_reset`, in O(1) inside Redis: the graph moves aside as a
    /// new generation begins, and [`sweep`] removes the old one afterwards in bounded steps (call it after a reset;
    /// what a crash leaves unswept stays recorded for any later sweep).
    pub async fn reset<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        reason: &str,
        traceparent: Option<&str>,
    ) -> Result<String, RedisError> {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("cg_reset");
        self.common_args(&mut cmd, traceparent);
        cmd.arg(reason.replace(|c: char| c.is_control(), " "));
        self.call(conn, &cmd).await
    }

    /// `SADD` of the project name: idempotent, outside the Function because the key is outside the project slot.
    /// Best effort: the mutation is already applied, and on a Redis Cluster the registry lives on another shard,
    /// which may be failing over while this project's shard serves — so a failed `SADD` is logged, not returned
    /// (the next change of the project registers it again). Never fails; the `Result` keeps the call sites' shape.
    async fn register_project<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        let mut add = redis::cmd("SADD");
        add.arg(PROJECTS_KEY).arg(self.names.project().as_str());
        if let Err(e) = add.query_async::<i64>(conn).await {
            tracing::warn!(project = %self.names.project(), error = %e, "the project registry was not updated; the next change retries");
        }
        Ok(())
    }
}

/// Runs a Function call, loading the library first if Redis lost it (a restart without persistence) or has an
/// older one without the function.
async fn call_function<C: ConnectionLike + Send, T: redis::FromRedisValue>(
    conn: &mut C,
    cmd: &redis::Cmd,
) -> Result<T, RedisError> {
    match cmd.query_async(conn).await {
        Err(e) if is_function_missing(&e) => {
            load_missing(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// After a call found no function: loads the library where it is missing (on a cluster: every primary without
/// it, such as a new node; `FUNCTION LOAD` without `REPLACE` leaves the others alone), then replaces an older one
/// (a single Redis; [`crate::redis_handle::RedisConn::ensure_library`] checks each primary of a cluster).
async fn load_missing<C: ConnectionLike + Send>(conn: &mut C) -> Result<(), RedisError> {
    match redis::cmd("FUNCTION").arg("LOAD").arg(SOURCE).query_async::<Value>(conn).await {
        Err(e) if !e.to_string().contains("already exists") => return Err(e),
        _ => {}
    }
    ensure_loaded(conn).await
}

/// Trims the project's CDC stream, in one atomic step, below the lowest entry any consumer group still needs (its
/// oldest pending entry, else the one after its last-delivered-id) and below `keep_from` (the retention floor:
/// entries below it may go), whichever is lower. Whole stream nodes only, so a few more may stay. A stream without
/// groups is left alone. Returns how many entries were removed.
pub async fn trim_stream<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    keep_from: StreamId,
) -> Result<u64, RedisError> {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("cg_trim").arg(1).arg(names.prefix()).arg(keep_from.to_string());
    call_function(conn, &cmd).await
}

/// One bounded step of removing what resets left behind (`cg_sweep`): the adjacency sets of at most `budget`
/// nodes of the oldest old generation, or, once they are gone, its moved-aside keys (`UNLINK`, freed in the
/// background). Returns how many old generations are left (0: nothing to do). Never touches the current graph.
pub async fn sweep<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    budget: usize,
) -> Result<u64, RedisError> {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg("cg_sweep").arg(1).arg(names.prefix()).arg(budget.max(1));
    call_function(conn, &cmd).await
}

/// Sweeps until every old generation of the project is gone, [`SWEEP_BUDGET`] nodes per call (other clients'
/// commands run between the calls). Returns the number of calls made.
pub async fn sweep_all<C: ConnectionLike + Send>(conn: &mut C, names: &RedisNames) -> Result<u64, RedisError> {
    let mut calls = 0;
    loop {
        calls += 1;
        if sweep(conn, names, SWEEP_BUDGET).await? == 0 {
            return Ok(calls);
        }
    }
}

/// The project's current generation of adjacency keys.
pub async fn generation<C: ConnectionLike + Send>(conn: &mut C, names: &RedisNames) -> Result<Generation, RedisError> {
    let g: Option<u64> = redis::cmd("GET").arg(names.generation()).query_async(conn).await?;
    Ok(Generation(g.unwrap_or(0)))
}

/// Runs the reads `build` adds for a generation (e.g. `SMEMBERS` of [`RedisNames::outgoing`]) in one `MULTI`
/// with a check that it is still the current generation, so the reads are of the current graph at one moment;
/// when a reset came in between, runs them again for the new one. Returns the generation and the reads' replies.
pub async fn read_at_generation<C: ConnectionLike + Send, T: redis::FromRedisValue>(
    conn: &mut C,
    names: &RedisNames,
    build: impl Fn(&mut redis::Pipeline, Generation),
) -> Result<(Generation, T), RedisError> {
    let mut at = generation(conn, names).await?;
    loop {
        let mut pipe = redis::pipe();
        pipe.atomic().get(names.generation());
        build(&mut pipe, at);
        let reply: Vec<redis::Value> = pipe.query_async(conn).await?;
        let mut replies = reply.into_iter();
        let now: Option<u64> = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
        let now = Generation(now.unwrap_or(0));
        if now == at {
            return Ok((at, redis::from_redis_value(redis::Value::Array(replies.collect()))?));
        }
        at = now;
    }
}

/// A CDC stream held above its length cap because a consumer group still needs older entries, as the cap found
/// it at its last check (once per 100 to 1,000 new entries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapHold {
    /// Entries in the stream beyond the cap.
    pub entries: u64,
    /// The cap.
    pub cap: u64,
    /// The group with the lowest floor.
    pub group: String,
    /// The lowest entry that group still needs.
    pub floor: StreamId,
    /// When the cap found it, Redis time in ms.
    pub checked_at_ms: u64,
}

/// Whether a lagging consumer group holds the project's stream above its cap, and by how much; `None` when the
/// cap could trim at its last check. For services to log and export.
pub async fn cap_hold<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> Result<Option<CapHold>, RedisError> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL").arg(names.cdc_held()).query_async(conn).await?;
    Ok(CapHold::from_fields(&fields))
}

impl CapHold {
    /// `None` when the record is absent (or not one the library wrote).
    fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        fn value<T: std::str::FromStr>(fields: &HashMap<String, String>, name: &str) -> Option<T> {
            fields.get(name)?.parse().ok()
        }
        Some(Self {
            entries: value(fields, "entries")?,
            cap: value(fields, "cap")?,
            group: fields.get("group")?.clone(),
            floor: value(fields, "floor")?,
            checked_at_ms: value(fields, "checked_at")?,
        })
    }
}

fn expect_arg(e: Expect) -> String {
    match e {
        Expect::Any => String::new(),
        Expect::Absent => "absent".into(),
        Expect::Version(v) => v.to_string(),
    }
}

fn push_op(cmd: &mut redis::Cmd, op: &Mutation) {
    match op {
        Mutation::UpsertNode(n, e) => {
            cmd.arg("un").arg(&n.id).arg(&n.kind).arg("").arg("").arg(n.canonical_json()).arg(expect_arg(*e));
        }
        Mutation::UpsertRelationship(r, e) => {
            cmd.arg("ur")
                .arg(&r.id)
                .arg(&r.rel_type)
                .arg(&r.source)
                .arg(&r.target)
                .arg(r.canonical_json())
                .arg(expect_arg(*e));
        }
        Mutation::DeleteNode(id, e) => {
            cmd.arg("dn").arg(id).arg("").arg("").arg("").arg("").arg(expect_arg(*e));
        }
        Mutation::DeleteRelationship(id, e) => {
            cmd.arg("dr").arg(id).arg("").arg("").arg("").arg("").arg(expect_arg(*e));
        }
    }
}

/// Reads `cg_mutate`'s reply: the entry id (`''`: none), then `status:version[:index:cascaded]` per operation.
fn parse_outcomes(reply: &[String]) -> Vec<Outcome> {
    let Some((entry, ops)) = reply.split_first() else { return Vec::new() };
    ops.iter()
        .map(|op| {
            let mut parts = op.split(':');
            let status = match parts.next().unwrap_or_default() {
                "created" => Status::Created,
                "updated" => Status::Updated,
                "deleted" => Status::Deleted,
                "not_found" => Status::NotFound,
                _ => Status::Unchanged,
            };
            let version = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let change_index: Option<u32> = parts.next().and_then(|i| i.parse().ok());
            Outcome {
                status,
                version,
                event_id: change_index.is_some().then(|| entry.clone()),
                change_index,
                cascaded: parts.next().and_then(|c| c.parse().ok()).unwrap_or(0),
            }
        })
        .collect()
}

/// How long a caller should wait before retrying after Redis was unavailable.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;

    fn upsert(id: &str, file: &str, bytes: usize) -> Mutation {
        let n = Node {
            id: id.into(),
            kind: "function".into(),
            name: id.into(),
            file: Some(file.into()),
            line_start: None,
            line_end: None,
            properties: [("pad".to_owned(), "x".repeat(bytes).into())].into(),
            version: None,
        };
        Mutation::UpsertNode(n, Expect::Any)
    }

    #[test]
    fn calls_keep_order_and_bound_operations_and_bytes() {
        let ops: Vec<_> = (0..25).map(|i| upsert(&format!("n{i}"), "f", 100)).collect();
        let split = calls(&ops, 10);
        assert_eq!(split.iter().map(|c| c.len()).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(split.concat(), ops);
        let big: Vec<_> = (0..10).map(|i| upsert(&format!("n{i}"), "f", MAX_CHANGE_SET_BYTES / 4)).collect();
        let split = calls(&big, 1000);
        assert!(split.len() >= 3, "{}", split.len());
        for c in &split {
            assert!(c.len() == 1 || c.iter().map(change_size).sum::<usize>() <= MAX_CHANGE_SET_BYTES);
        }
        assert_eq!(split.concat(), big);
        assert!(calls(&[], 10).is_empty());
    }

    #[test]
    fn calls_by_group_keep_each_group_whole_and_pack_small_ones() {
        let files = ["a", "a", "b", "b", "b", "c"];
        let ops: Vec<_> = files.iter().enumerate().map(|(i, f)| upsert(&i.to_string(), f, 10)).collect();
        let file = |op: &Mutation| match op {
            Mutation::UpsertNode(n, _) => n.file.clone(),
            _ => None,
        };
        let lens = |max| calls_by(&ops, max, file).iter().map(|c| c.len()).collect::<Vec<_>>();
        assert_eq!(lens(1000), [6], "small groups share one call");
        assert_eq!(lens(4), [2, 4], "a group that does not fit starts a new call");
        assert_eq!(lens(3), [2, 3, 1]);
        assert_eq!(lens(2), [2, 2, 2], "only a group larger than a call is split; its tail takes the next group");
        for max in 1..8 {
            assert_eq!(calls_by(&ops, max, file).concat(), ops);
        }
    }

    fn lua_constant(name: &str) -> Option<usize> {
        let declaration = format!("local {name} = ");
        super::SOURCE
            .lines()
            .find_map(|l| l.trim().strip_prefix(declaration.as_str()))
            .and_then(|v| v.trim().parse::<usize>().ok())
    }

    #[test]
    fn the_bounds_are_the_library_s() {
        assert_eq!(lua_constant("MAX_CASCADE"), Some(MAX_CASCADE));
        assert_eq!(lua_constant("RECENT_JOBS_KEPT"), Some(RECENT_JOBS_KEPT));
    }

    #[test]
    fn the_library_declares_its_version_and_name() {
        assert!(super::library_version() >= 1);
        assert!(super::SOURCE.starts_with("#!lua name=codegraph\n"));
    }
}
