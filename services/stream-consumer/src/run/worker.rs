//! The worker that applies one project's CDC stream to one sink while this process owns the project's lease.
//!
//! On start it waits until no other consumer of the group has entries pending (claiming them with `XAUTOCLAIM`
//! once they have been idle longer than the slowest batch), then applies its own pending entries, then new ones,
//! in stream order. An entry is acknowledged only after the sink has committed it (or after it went to the
//! dead-letter stream). Entries at or below the sink's recorded ID are acknowledged without applying them again.
//!
//! An entry is one change set (or a single event: a job event, `graph_reset`, or a graph change of a stream written
//! before change sets) and is applied whole: a commit holds whole entries, at most `batch_size` changes, and a
//! set larger than that is a commit of its own ([`commit_len`]), so the sink shows every change of a set at once
//! or none of them. An entry that cannot be applied goes to the dead letters whole.
//!
//! New entries are read in one `MULTI` with the stream's highest deleted ID: a deleted ID above what the group was
//! given (and the sink holds) means entries were trimmed before this sink saw them. Then the worker does not skip
//! them: it reports `resync_required` (status, metric, log) and, unless configured not to, rebuilds the project
//! from a snapshot and continues after the snapshot's ID.
//!
//! Every commit carries the lease generation the worker was started with and the ID it knows the sink recorded
//! ([`Writer`]). A sink that answers [`SinkError::Fenced`] was written by a newer owner: the worker stops. A sink
//! that lost data — no record of the project, or a record behind what the group acknowledged, found when the
//! worker starts or by a commit ([`SinkError::Lost`]) — is refilled: the project is rebuilt from the stream
//! when the stream still holds every entry it ever had (the sink is reset and the group moved back to the start),
//! else from a snapshot; status (`refilling`, `refills`), metric (`codegraph_consumer_refills_total{sink,reason}`)
//! and log say so.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use codegraph_shared::redis_handle::RedisConn;
use tracing::{info, warn, Instrument};

use codegraph_shared::{
    event::{ChangeSet, StreamId},
    functions::cap_hold,
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    shutdown::Shutdown,
    stream::now_ms,
};

use crate::{
    dead_letters::DeadLetters,
    rebuild::{Rebuild, RebuildReport},
    run::{
        decoded::{Decoded, DecodedBatch},
        lease,
        status::{ProjectStatus, StatusBoard, METRICS},
        trim,
    },
    settings::ConsumerSettings,
    sinks::{plan::commit_len, Plan, Sink, SinkError, Writer},
    stream::{self, Entry, Gap, GroupStream, ReadFrom},
};

/// Longest wait between two attempts at an unavailable sink or Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What every worker of one sink shares.
pub struct SinkContext<S: Sink> {
    pub sink: Arc<S>,
    pub redis: RedisHandle,
    pub settings: ConsumerSettings,
    pub consumer: String,
    pub board: StatusBoard,
}

/// How a batch ended.
enum Progress {
    /// Everything was applied (or dead-lettered) and acknowledged.
    Done,
    /// An entry failed and has deliveries left: read the pending entries again after a pause.
    Retry(Duration),
    /// Shutdown, lost lease, or fenced out.
    Stopped,
    /// A pending entry was trimmed before it was applied.
    Resync(Gap),
    /// The sink lost data it had recorded.
    Refill(&'static str),
}

/// Why preparing a project did not work out.
enum PrepareError {
    /// A newer owner wrote to the sink.
    Fenced(String),
    /// Retry after a pause.
    Failed(String),
}

impl From<String> for PrepareError {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

/// What one read brought.
enum Read {
    Entries(Vec<Entry>),
    /// Entries the group was never given are gone.
    Gap(Gap),
}

/// An entry read and decoded, with the envelope as stored (what a dead letter keeps).
struct Pending {
    set: ChangeSet,
    body: String,
}

struct Worker<S: Sink> {
    ctx: Arc<SinkContext<S>>,
    project: ProjectName,
    stream: GroupStream,
    dead_letters: DeadLetters,
    stop: Shutdown,
    /// The lease generation this worker writes under.
    generation: u64,
    last_applied: Option<StreamId>,
    /// The last ID delivered to the group (by this worker or a previous owner).
    delivered: StreamId,
    /// Entries above the writers' length cap that a lagging group holds, as last reported to the metric.
    held: u64,
}

/// Runs until `stop` fires (shutdown, lost lease, or the project was handed to another process).
pub async fn run<S: Sink>(ctx: Arc<SinkContext<S>>, project: ProjectName, generation: u64, stop: Shutdown) {
    let names = RedisNames::new(&project);
    let sink_name = ctx.sink.name();
    let mut worker = Worker {
        stream: GroupStream::new(&names, sink_name, &ctx.consumer),
        dead_letters: DeadLetters::new(&names, sink_name),
        ctx,
        project,
        stop,
        generation,
        last_applied: None,
        delivered: StreamId::ZERO,
        held: 0,
    };
    let span = tracing::info_span!("project", sink = sink_name, project = %worker.project, generation);
    worker.run().instrument(span).await;
    worker.report_held(0);
}

impl<S: Sink> Worker<S> {
    fn status(&self, f: impl FnOnce(&mut ProjectStatus)) {
        self.ctx.board.update(self.ctx.sink.name(), self.project.as_str(), f);
    }

    /// Sleeps `d` unless stopped first; false when stopped.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.wait() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn run(&mut self) {
        self.status(|s| s.state = "starting");
        let Some(mut reader) = self.prepare().await else { return };
        info!(last_applied = ?self.last_applied, "applying the project's stream");
        self.status(|s| s.state = "running");
        let mut from = ReadFrom::PendingAfter(StreamId::ZERO);
        let mut backoff = Duration::from_millis(100);
        let mut last_janitor = Instant::now();
        let mut last_trim = Instant::now();
        let mut last_check = Instant::now();
        let settings = self.ctx.settings.clone();
        while !self.stop.is_triggered() {
            if last_janitor.elapsed() >= Duration::from_millis(settings.claim_idle_ms / 2) {
                last_janitor = Instant::now();
                if self.claim_abandoned().await > 0 {
                    from = ReadFrom::PendingAfter(StreamId::ZERO);
                }
            }
            if settings.trim_interval_ms > 0 && last_trim.elapsed() >= Duration::from_millis(settings.trim_interval_ms)
            {
                last_trim = Instant::now();
                self.trim().await;
            }
            let read = tokio::select! {
                _ = self.stop.wait() => break,
                r = self.read(&mut reader, from) => r,
            };
            let entries = match read {
                Ok(Read::Entries(e)) => e,
                Ok(Read::Gap(g)) => {
                    if !self.resync(g).await {
                        break;
                    }
                    from = ReadFrom::PendingAfter(StreamId::ZERO);
                    continue;
                }
                Err(e) => {
                    if let Some(why) = stream::fenced(&e) {
                        self.fenced(why);
                        break;
                    }
                    warn!(error = %e, "reading the stream failed");
                    if !self.pause(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // The dedicated connection does not reconnect by itself.
                    if let Ok(conn) = self.reader().await {
                        reader = conn;
                    }
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            if let Some(last) = entries.last() {
                self.delivered = self.delivered.max(last.id);
            }
            if let ReadFrom::PendingAfter(_) = from {
                match entries.last() {
                    None => {
                        from = ReadFrom::New;
                        continue;
                    }
                    Some(last) => from = ReadFrom::PendingAfter(last.id),
                }
            }
            if entries.is_empty() {
                // Idle: a sink that lost its data (restarted empty) gets no commit that would find out.
                if last_check.elapsed() >= Duration::from_millis(settings.tick_ms) {
                    last_check = Instant::now();
                    if let Some(reason) = self.sink_lost_data().await {
                        if !self.refill(reason).await {
                            break;
                        }
                        from = ReadFrom::PendingAfter(StreamId::ZERO);
                    }
                }
                continue;
            }
            match self.apply_entries(entries).await {
                Progress::Done => {}
                Progress::Stopped => break,
                Progress::Resync(g) => {
                    if !self.resync(g).await {
                        break;
                    }
                    from = ReadFrom::PendingAfter(StreamId::ZERO);
                }
                Progress::Refill(reason) => {
                    if !self.refill(reason).await {
                        break;
                    }
                    from = ReadFrom::PendingAfter(StreamId::ZERO);
                }
                Progress::Retry(wait) => {
                    from = ReadFrom::PendingAfter(StreamId::ZERO);
                    if !self.pause(wait).await {
                        break;
                    }
                }
            }
        }
        info!("stopped applying the project's stream");
    }

    /// Group, sink, dedicated reading connection, and the previous owners' pending entries. `None`: stopped.
    async fn prepare(&mut self) -> Option<RedisConn> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.stop.is_triggered() {
                return None;
            }
            match self.try_prepare().await {
                Ok(Some(conn)) => return Some(conn),
                Ok(None) => backoff = Duration::from_millis(self.ctx.settings.tick_ms.max(50)),
                Err(PrepareError::Fenced(e)) => {
                    self.fenced(e);
                    return None;
                }
                Err(PrepareError::Failed(e)) => {
                    warn!(error = %e, "preparing the project failed; retrying");
                    self.status(|s| s.last_error = Some(e.clone()));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if !self.pause(backoff).await {
                return None;
            }
        }
    }

    /// `Ok(None)`: another consumer still has entries pending that are not idle long enough to claim.
    async fn try_prepare(&mut self) -> Result<Option<RedisConn>, PrepareError> {
        let mut conn = self.ctx.redis.conn();
        self.stream.ensure_group(&mut conn).await.map_err(|e| format!("create group: {e}"))?;
        self.delivered = self.stream.last_delivered(&mut conn).await.map_err(|e| format!("group info: {e}"))?;
        self.last_applied = match self.ctx.sink.open(&self.project, self.generation).await {
            Ok(id) => id,
            Err(SinkError::Fenced(e)) => return Err(PrepareError::Fenced(e)),
            Err(e) => return Err(e.to_string().into()),
        };
        self.status(|s| s.last_applied = self.last_applied.map(|i| i.to_string()));
        let idle = self.ctx.settings.claim_idle_ms;
        if let Err(e) = self.stream.claim_idle(&mut conn, idle, self.generation).await {
            return Err(match stream::fenced(&e) {
                Some(why) => PrepareError::Fenced(why),
                None => format!("claim: {e}").into(),
            });
        }
        let pending = self.stream.pending_by_consumer(&mut conn).await.map_err(|e| format!("pending: {e}"))?;
        let others: u64 = pending.iter().filter(|(c, _)| *c != self.ctx.consumer).map(|(_, n)| n).sum();
        if others > 0 {
            self.status(|s| s.state = "waiting_for_previous_owner");
            info!(entries = others, "waiting for entries pending at other consumers to become claimable");
            return Ok(None);
        }
        match self.lost_data(&mut conn).await.map_err(|e| format!("compare with the group: {e}"))? {
            Some("fresh") => {
                // A sink that never had the project: start its record, then take the whole stream.
                match self.ctx.sink.reset(&self.project, self.generation).await {
                    Ok(()) => self.last_applied = Some(StreamId::ZERO),
                    Err(SinkError::Fenced(e)) => return Err(PrepareError::Fenced(e)),
                    Err(e) => return Err(e.to_string().into()),
                }
            }
            // Stopped or fenced out while refilling: `prepare` sees the stop.
            Some(reason) if !self.refill(reason).await => return Ok(None),
            Some(_) | None => {}
        }
        Ok(Some(self.reader().await.map_err(|e| format!("connect: {e}"))?))
    }

    /// Whether the sink lost data the group acknowledged: `missing` (no record), `behind` (entries between the
    /// record and what the group acknowledged), `fresh` (no record, and the group never got anything), or `None`;
    /// or whether Redis lost what the sink applied: `ahead_of_redis` (the stream no longer holds the entry the sink
    /// recorded, though it was not trimmed: a failover to a replica that had not received it), so the sink holds
    /// changes Redis does not and is rebuilt from Redis.
    async fn lost_data(&self, conn: &mut RedisConn) -> Result<Option<&'static str>, redis::RedisError> {
        let oldest_pending = self.stream.oldest_pending(conn).await?;
        let Some(recorded) = self.last_applied else {
            let fresh = self.delivered == StreamId::ZERO && oldest_pending.is_none();
            return Ok(Some(if fresh { "fresh" } else { "missing" }));
        };
        if self.stream.lost_entry(conn, recorded).await? {
            return Ok(Some("ahead_of_redis"));
        }
        // Everything below the oldest pending entry (or up to the last delivered one) was acknowledged.
        let behind = match oldest_pending {
            Some(p) => self.stream.has_entries_between(conn, recorded, p, false).await?,
            None => self.stream.has_entries_between(conn, recorded, self.delivered, true).await?,
        };
        Ok(behind.then_some("behind"))
    }

    /// While idle: whether the sink's record of the project is gone (`missing`) or older than what this worker
    /// committed (`behind`), or names an entry Redis lost (`ahead_of_redis`). An unreachable sink or Redis is not a
    /// loss: the next check or commit decides.
    async fn sink_lost_data(&self) -> Option<&'static str> {
        let committed = self.last_applied?;
        match self.ctx.sink.recorded(&self.project).await {
            Ok(None) => Some("missing"),
            Ok(Some(recorded)) if recorded < committed => Some("behind"),
            // Or Redis lost what the sink applied (see `lost_data`).
            Ok(Some(recorded)) => match self.stream.lost_entry(&mut self.ctx.redis.conn(), recorded).await {
                Ok(true) => Some("ahead_of_redis"),
                Ok(false) => None,
                Err(e) => {
                    warn!(error = %e, "comparing the sink's record with the stream failed");
                    None
                }
            },
            Err(e) => {
                warn!(error = %e, "reading the sink's record failed");
                None
            }
        }
    }

    /// The sink lost data (`reason`): rebuild the project from the stream when it holds everything, else from a
    /// snapshot, and say so. False when stopped or fenced out first.
    async fn refill(&mut self, reason: &'static str) -> bool {
        let sink = self.ctx.sink.name();
        warn!(reason, recorded = ?self.last_applied, delivered = %self.delivered, "the sink lost data of the project: refilling it");
        METRICS.refills.with_label_values(&[sink, reason]).inc();
        self.status(|s| {
            s.state = "refilling";
            s.refills += 1;
            s.last_error = Some(format!("the sink lost data ({reason}); refilling"));
        });
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.stop.is_triggered() {
                return false;
            }
            match self.try_refill().await {
                Ok(source) => {
                    info!(source, "refilled the sink; continuing");
                    self.status(|s| {
                        s.state = "running";
                        s.last_error = None;
                        s.last_applied = self.last_applied.map(|i| i.to_string());
                    });
                    return true;
                }
                Err(e) => {
                    if let Some(SinkError::Fenced(f)) = e.downcast_ref::<SinkError>() {
                        self.fenced(f.clone());
                        return false;
                    }
                    warn!(error = %e, "refilling failed; retrying");
                    self.status(|s| s.last_error = Some(format!("refill: {e:#}")));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if !self.pause(backoff).await {
                return false;
            }
        }
    }

    /// Rebuilds the project; returns where from (`stream` or `snapshot`).
    async fn try_refill(&mut self) -> anyhow::Result<&'static str> {
        let mut conn = self.ctx.redis.conn();
        if !self.stream.holds_everything(&mut conn).await? {
            self.rebuild().await?;
            return Ok("snapshot");
        }
        self.ensure_current().await?;
        self.ctx.sink.reset(&self.project, self.generation).await?;
        self.ctx.sink.open(&self.project, self.generation).await?; // indexes, when the backend lost them too
        self.stream.ack_all_pending(&mut conn).await?;
        self.stream.set_delivered(&mut conn, StreamId::ZERO, Some(0)).await?;
        self.delivered = StreamId::ZERO;
        self.last_applied = Some(StreamId::ZERO);
        Ok("stream")
    }

    /// Fails with [`SinkError::Fenced`] unless this worker's generation is still the lease's newest: before a
    /// rebuild, so a worker paused past its lease does not reset the sink and move the group back.
    async fn ensure_current(&self) -> anyhow::Result<()> {
        let names = RedisNames::new(&self.project);
        if !lease::is_current(&mut self.ctx.redis.conn(), &names, self.ctx.sink.name(), self.generation).await? {
            return Err(SinkError::Fenced(format!("the lease was taken after generation {}", self.generation)).into());
        }
        Ok(())
    }

    /// A newer owner wrote to the sink: this worker lost the project.
    fn fenced(&self, error: String) {
        warn!(%error, "fenced out of the sink by a newer owner; stopping the project's worker");
        METRICS.fenced.with_label_values(&[self.ctx.sink.name()]).inc();
        self.status(|s| {
            s.state = "fenced";
            s.last_error = Some(error);
        });
        self.stop.trigger();
    }

    /// The next entries: this consumer's pending ones, or new ones (checked for a gap; when there are none, it
    /// waits up to `block_ms` for the stream to grow).
    async fn read(&self, reader: &mut RedisConn, from: ReadFrom) -> Result<Read, redis::RedisError> {
        let batch = self.ctx.settings.batch_size;
        if let ReadFrom::PendingAfter(_) = from {
            return self.stream.read(reader, from, batch, 0).await.map(Read::Entries);
        }
        let read = self.stream.read_new(reader, batch, self.generation).await?;
        if let Some(g) = read.gap(self.delivered.max(self.last_applied.unwrap_or(StreamId::ZERO))) {
            // Not applied past the gap, and still visible to whoever reads next (after a restart, too).
            self.stream.unread(reader, &read).await?;
            return Ok(Read::Gap(g));
        }
        if read.entries.is_empty() {
            self.stream.wait_for_new(reader, read.info.last_generated, self.ctx.settings.block_ms).await?;
        }
        Ok(Read::Entries(read.entries))
    }

    /// Entries were trimmed before the sink got them: report it, then rebuild from a snapshot (or, when that is
    /// off, wait for a replay to record an ID past them). False when stopped first.
    async fn resync(&mut self, g: Gap) -> bool {
        let sink = self.ctx.sink.name();
        warn!(after = %g.after, before = %g.before, "stream entries were trimmed before this sink applied them: resync required");
        let gauge = METRICS.resync_required.with_label_values(&[sink]);
        gauge.inc();
        self.status(|s| {
            s.state = "resync_required";
            s.resync_required = true;
            s.last_error = Some(format!(
                "entries after {} and before {} were trimmed before they were applied",
                g.after, g.before
            ));
        });
        let mut backoff = Duration::from_millis(100);
        let resynced = loop {
            if self.stop.is_triggered() {
                break false;
            }
            if self.ctx.settings.resync_from_snapshot {
                self.status(|s| s.state = "resyncing");
                match self.rebuild().await {
                    Ok(()) => break true,
                    Err(e) => {
                        if let Some(SinkError::Fenced(f)) = e.downcast_ref::<SinkError>() {
                            self.fenced(f.clone());
                            break false;
                        }
                        warn!(error = %e, "rebuilding from a snapshot failed; retrying");
                        self.status(|s| s.last_error = Some(format!("resync: {e:#}")));
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            } else if let Ok(Some(id)) = self.ctx.sink.open(&self.project, self.generation).await {
                if id.successor() >= g.before {
                    info!(%id, "a replay recorded an ID past the trimmed entries; continuing");
                    self.last_applied = Some(id);
                    match self.stream.set_delivered(&mut self.ctx.redis.conn(), id, None).await {
                        Ok(()) => break true,
                        Err(e) => warn!(error = %e, "moving the group past the replayed entries failed; retrying"),
                    }
                }
                backoff = self.ctx.settings.tick();
            }
            if !self.pause(backoff).await {
                break false;
            }
        };
        gauge.dec();
        if resynced {
            self.status(|s| {
                s.state = "running";
                s.resync_required = false;
                s.last_error = None;
            });
        }
        resynced
    }

    /// Empties the project in the sink, loads a snapshot from Redis and moves the group to the snapshot's ID
    /// (what was pending is acknowledged: the snapshot has it, and the stream after it follows).
    async fn rebuild(&mut self) -> anyhow::Result<()> {
        self.ensure_current().await?;
        let mut rebuild = Rebuild {
            sink: self.ctx.sink.as_ref(),
            redis: &self.ctx.redis,
            project: self.project.clone(),
            generation: self.generation,
            recorded: StreamId::ZERO,
            batch: self.ctx.settings.batch_size,
            show_progress: false,
        };
        let mut report = RebuildReport::default();
        let (since, entries_read) = rebuild.from_snapshot(None, &mut report).await?;
        let mut conn = self.ctx.redis.conn();
        self.stream.ack_all_pending(&mut conn).await?;
        self.stream.set_delivered(&mut conn, since, entries_read).await?;
        self.delivered = self.delivered.max(since);
        self.last_applied = Some(since);
        METRICS.resyncs.with_label_values(&[self.ctx.sink.name()]).inc();
        self.status(|s| {
            s.resyncs += 1;
            s.last_applied = Some(since.to_string());
        });
        info!(entities = report.snapshot_entities, %since, "rebuilt the project from a snapshot; continuing after it");
        Ok(())
    }

    /// A connection of its own for the blocking reads, with a response timeout longer than the block.
    async fn reader(&self) -> Result<RedisConn, redis::RedisError> {
        self.ctx.redis.blocking_connection(self.ctx.settings.block()).await
    }

    /// The janitor: claims entries other consumers left pending longer than `claim_idle_ms`.
    async fn claim_abandoned(&self) -> usize {
        let mut conn = self.ctx.redis.conn();
        match self.stream.claim_idle(&mut conn, self.ctx.settings.claim_idle_ms, self.generation).await {
            Ok(n) => {
                if n > 0 {
                    warn!(entries = n, "claimed entries another consumer left pending");
                }
                n
            }
            Err(e) => {
                match stream::fenced(&e) {
                    Some(why) => self.fenced(why),
                    None => warn!(error = %e, "claiming abandoned entries failed"),
                }
                0
            }
        }
    }

    /// Trims the stream, and reports whether a lagging group holds it above the writers' length cap.
    async fn trim(&mut self) {
        let mut conn = self.ctx.redis.conn();
        let names = RedisNames::new(&self.project);
        match trim::trim(&mut conn, &names, now_ms(), self.ctx.settings.retention_ms).await {
            Ok(n) if n > 0 => info!(entries = n, "trimmed the stream below what every group still needs"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "trimming failed"),
        }
        match cap_hold(&mut conn, &names).await {
            Ok(Some(hold)) => {
                if hold.entries != self.held {
                    warn!(
                        entries = hold.entries,
                        cap = hold.cap,
                        group = %hold.group,
                        floor = %hold.floor,
                        "a consumer group holds the stream above its length cap (it still needs older entries)"
                    );
                }
                self.report_held(hold.entries);
            }
            Ok(None) => self.report_held(0),
            Err(e) => warn!(error = %e, "reading the length cap's record failed"),
        }
    }

    /// Sets this project's share of the held-entries gauge.
    fn report_held(&mut self, entries: u64) {
        let gauge = METRICS.held_entries.with_label_values(&[self.ctx.sink.name()]);
        gauge.add(entries as i64 - self.held as i64);
        self.held = entries;
    }

    /// Applies a batch of entries in order: what the sink already has is acknowledged, runs of good entries are
    /// committed as plans of whole change sets ([`commit_len`]), and a failing entry is retried or, out of
    /// deliveries, dead-lettered. Each commit is made as soon as its entries are decoded, while a large batch's
    /// later entries are decoded on another thread ([`DecodedBatch`]).
    async fn apply_entries(&mut self, entries: Vec<Entry>) -> Progress {
        let mut conn = self.ctx.redis.conn();
        let mut run: Vec<Pending> = Vec::with_capacity(entries.len());
        let mut skipped: Vec<StreamId> = Vec::new();
        let mut decoded = DecodedBatch::new(entries, self.last_applied);
        while let Some(entry) = decoded.next().await {
            match entry {
                Decoded::Applied(id) => skipped.push(id),
                Decoded::Trimmed(id) => {
                    // Pending, then trimmed before it was applied: the entry is lost to this sink.
                    return match self.commit_run(&mut conn, &mut run, &mut skipped).await {
                        Progress::Done => {
                            let after = self.last_applied.unwrap_or(StreamId::ZERO);
                            Progress::Resync(Gap { after, before: id.successor() })
                        }
                        other => other,
                    };
                }
                Decoded::Set { set, body } => {
                    run.push(Pending { set, body });
                    // The run holds more than one commit: commit the first while the next entries are decoded.
                    let batch = self.ctx.settings.batch_size;
                    let take = commit_len(run.iter().map(|p| p.set.changes.len()), batch);
                    if take < run.len() {
                        let mut head: Vec<Pending> = run.drain(..take).collect();
                        match self.commit_run(&mut conn, &mut head, &mut skipped).await {
                            Progress::Done => {}
                            other => return other,
                        }
                    }
                }
                Decoded::Poison { id, body, error } => {
                    match self.commit_run(&mut conn, &mut run, &mut skipped).await {
                        Progress::Done => {}
                        other => return other,
                    }
                    match self.poison(&mut conn, id, &body, &error).await {
                        Progress::Done => {}
                        other => return other,
                    }
                }
            }
        }
        self.commit_run(&mut conn, &mut run, &mut skipped).await
    }

    /// Commits `run` in plans of whole change sets of at most `batch_size` changes (and acknowledges it with
    /// `skipped`), splitting out entries the sink cannot apply. An entry is never split: its change set is in one
    /// plan, so the sink shows all of it or none.
    async fn commit_run(
        &mut self,
        conn: &mut RedisConn,
        run: &mut Vec<Pending>,
        skipped: &mut Vec<StreamId>,
    ) -> Progress {
        'batch: while !run.is_empty() {
            let take = commit_len(run.iter().map(|p| p.set.changes.len()), self.ctx.settings.batch_size);
            let (count, outcome) = match Plan::build(run[..take].iter().map(|p| &p.set), run[take - 1].set.id) {
                Ok(plan) => (take, self.commit(&plan, &run[..take]).await),
                Err(bad) if bad.index > 0 => {
                    let head = &run[..bad.index];
                    let plan = Plan::build(head.iter().map(|p| &p.set), head[head.len() - 1].set.id)
                        .expect("the entries before the first bad one");
                    (bad.index, self.commit(&plan, head).await)
                }
                Err(bad) => (0, Err(SinkError::Rejected(bad.to_string()))),
            };
            match outcome {
                Ok(()) => {
                    skipped.extend(run.drain(..count).map(|p| p.set.id));
                    if let Err(e) = self.stream.ack(conn, skipped).await {
                        // Not acknowledged: they come back and are skipped by ID; nothing is applied twice.
                        warn!(error = %e, "acknowledging failed");
                    }
                    skipped.clear();
                }
                Err(SinkError::Rejected(e)) if count > 1 => {
                    // The backend refused the plan: find the culprit by committing its entries one at a time.
                    warn!(error = %e, entries = count, "sink refused a batch; applying its entries one by one");
                    for i in 0..count {
                        let one = &run[i..=i];
                        let plan = Plan::build([&one[0].set], one[0].set.id).expect("built before");
                        match self.commit(&plan, one).await {
                            Ok(()) => skipped.push(one[0].set.id),
                            Err(SinkError::Rejected(e)) => {
                                let _ = self.stream.ack(conn, skipped).await;
                                skipped.clear();
                                run.drain(..i);
                                match self.poison_run_head(conn, run, &e).await {
                                    Progress::Done => continue 'batch,
                                    other => return other,
                                }
                            }
                            Err(e) => return self.failed(e).await,
                        }
                    }
                    run.drain(..count);
                    let _ = self.stream.ack(conn, skipped).await;
                    skipped.clear();
                }
                Err(SinkError::Rejected(e)) => {
                    if !skipped.is_empty() {
                        let _ = self.stream.ack(conn, skipped).await;
                        skipped.clear();
                    }
                    match self.poison_run_head(conn, run, &e).await {
                        Progress::Done => {}
                        other => return other,
                    }
                }
                Err(e) => return self.failed(e).await,
            }
        }
        if !skipped.is_empty() {
            if let Err(e) = self.stream.ack(conn, skipped).await {
                warn!(error = %e, "acknowledging failed");
            }
            skipped.clear();
        }
        Progress::Done
    }

    /// The first entry of `run` cannot be applied: dead-letter it (and go on) or retry later.
    async fn poison_run_head(&mut self, conn: &mut RedisConn, run: &mut Vec<Pending>, error: &str) -> Progress {
        let head = run.remove(0);
        self.poison(conn, head.set.id, &head.body, error).await
    }

    async fn poison(&mut self, conn: &mut RedisConn, id: StreamId, body: &str, error: &str) -> Progress {
        let sink = self.ctx.sink.name();
        METRICS.sink_errors.with_label_values(&[sink, "rejected"]).inc();
        let deliveries = match self.stream.deliveries(conn, id).await {
            Ok(n) => n,
            Err(e) => return self.unavailable(format!("delivery count: {e}")).await,
        };
        self.status(|s| s.last_error = Some(format!("{id}: {error}")));
        if deliveries < self.ctx.settings.max_deliveries {
            warn!(%id, deliveries, error, "entry failed; it will be delivered again");
            self.status(|s| s.state = "retrying_poison_event");
            return Progress::Retry(Duration::from_millis(100 * deliveries.max(1)));
        }
        let sent = self.dead_letters.send(conn, id, body, error, deliveries, &self.ctx.consumer).await;
        if let Err(e) = sent {
            return self.unavailable(format!("dead-letter: {e}")).await;
        }
        // The sink records the dead letter's ID, so its record is not found behind what the group acknowledged.
        if self.last_applied.is_none_or(|last| id > last) {
            if let Err(e) = self.commit(&Plan::marker(id), &[]).await {
                return self.failed(e).await;
            }
        }
        if let Err(e) = self.stream.ack(conn, &[id]).await {
            warn!(error = %e, "acknowledging a dead letter failed");
        }
        warn!(%id, deliveries, error, dlq = self.dead_letters.key(), "entry moved to the dead-letter stream");
        METRICS.dead_letters.with_label_values(&[sink]).inc();
        self.status(|s| {
            s.dead_letters += 1;
            s.state = "running";
        });
        Progress::Done
    }

    /// A commit failed for a reason other than the entries: the sink is unavailable, lost data, or fenced us out.
    async fn failed(&self, error: SinkError) -> Progress {
        match error {
            SinkError::Fenced(e) => {
                self.fenced(e);
                Progress::Stopped
            }
            SinkError::Lost(e) => {
                warn!(error = %e, "the sink's record is not what this worker wrote");
                Progress::Refill("lost_on_commit")
            }
            SinkError::Unavailable(e) | SinkError::Rejected(e) => self.unavailable(e).await,
        }
    }

    async fn unavailable(&self, error: String) -> Progress {
        if self.stop.is_triggered() {
            return Progress::Stopped;
        }
        METRICS.sink_errors.with_label_values(&[self.ctx.sink.name(), "unavailable"]).inc();
        warn!(%error, "sink or Redis unavailable; the batch will be read again");
        self.status(|s| {
            s.state = "sink_unavailable";
            s.last_error = Some(error);
        });
        // Reading the pending entries again brings the same batch back, in order.
        Progress::Retry(Duration::from_secs(1))
    }

    /// One commit of `plan` to the sink (the plan of `entries`), with its metrics and trace.
    async fn commit(&mut self, plan: &Plan, entries: &[Pending]) -> Result<(), SinkError> {
        if self.stop.is_triggered() {
            return Err(SinkError::Unavailable("stopping".into()));
        }
        let sink = self.ctx.sink.name();
        let changes: usize = entries.iter().map(|p| p.set.changes.len()).sum();
        let span = tracing::info_span!("commit", sink, entries = entries.len(), changes, last_id = %plan.last_id);
        if let Some(tp) = entries.iter().find_map(|p| p.set.traceparent()) {
            codegraph_shared::telemetry::set_parent(&span, tp);
        }
        let started = Instant::now();
        let writer = Writer { generation: self.generation, recorded: self.last_applied.unwrap_or(StreamId::ZERO) };
        self.ctx.sink.apply(&self.project, writer, plan).instrument(span).await?;
        METRICS.batch_seconds.with_label_values(&[sink]).observe(started.elapsed().as_secs_f64());
        METRICS.batches.with_label_values(&[sink]).inc();
        METRICS.applied.with_label_values(&[sink]).inc_by(entries.len() as u64);
        METRICS.changes_applied.with_label_values(&[sink]).inc_by(changes as u64);
        let now = now_ms();
        let lag = METRICS.lag_seconds.with_label_values(&[sink]);
        for p in entries {
            lag.observe(now.saturating_sub(p.set.id.ms) as f64 / 1000.0);
        }
        self.last_applied = Some(plan.last_id);
        self.status(|s| {
            s.state = "running";
            s.applied += entries.len() as u64;
            s.changes_applied += changes as u64;
            s.last_applied = Some(plan.last_id.to_string());
        });
        Ok(())
    }
}
