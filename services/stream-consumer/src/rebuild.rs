//! Rebuilding one project in one sink: from a snapshot (graph-api's, or read from Redis in one `MULTI`), then
//! the stream after it. Used by a worker whose sink lost its data or whose stream was trimmed past what the sink
//! had, and by `stream-consumer replay`; either way the caller holds the project's lease, and every write carries
//! its generation (so a rebuild that lost the lease is fenced out like any writer).
//!
//! The stream is applied in commits of whole change sets (at most `batch` changes each, a larger set alone), as
//! the live consumer does. Entries that cannot be applied are skipped whole and reported (the live consumer
//! dead-letters them).

use std::{future::Future, time::Duration};

use anyhow::bail;
use redis::Value;
use serde::Serialize;
use tracing::warn;

use codegraph_shared::{
    event::{ChangeSet, StreamId},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    stream::{range_reply, Entry},
};

use crate::{
    progress::ProgressBar,
    sinks::{plan::commit_len, Plan, Sink, SinkError, Writer},
    snapshot,
};

#[derive(Debug, Default, Serialize)]
pub struct RebuildReport {
    pub snapshot_entities: u64,
    /// Stream entries read (change sets and single events), and their changes.
    pub stream_entries: u64,
    pub stream_changes: u64,
    pub skipped: Vec<String>,
    pub last_id: Option<StreamId>,
}

/// One rebuild of `project` in `sink` by the holder of lease `generation`.
pub struct Rebuild<'a, S: Sink> {
    pub sink: &'a S,
    pub redis: &'a RedisHandle,
    pub project: ProjectName,
    pub generation: u64,
    /// The ID the sink has recorded: every commit records at least this (the recorded ID only grows, so a replay
    /// from an older ID re-applies the entries, which versions keep from undoing newer state, and keeps the record).
    pub recorded: StreamId,
    /// Changes per sink commit (whole change sets: a larger one is a commit of its own).
    pub batch: usize,
    /// Draw progress bars on stderr.
    pub show_progress: bool,
}

impl<S: Sink> Rebuild<'_, S> {
    /// Empties the project in the sink and writes a snapshot (graph-api's at `api`, else read from Redis),
    /// recording the stream ID it is consistent with; returns that ID and, when known, how many entries the stream
    /// had received up to it.
    pub async fn from_snapshot(
        &mut self,
        api: Option<&str>,
        report: &mut RebuildReport,
    ) -> anyhow::Result<(StreamId, Option<u64>)> {
        let names = RedisNames::new(&self.project);
        while_unavailable(|| self.sink.reset(&self.project, self.generation)).await?;
        self.recorded = StreamId::ZERO;
        let snap = match api {
            Some(api) => snapshot::from_graph_api(api, self.project.as_str(), |_| {}).await?,
            None => snapshot::from_redis(&mut self.redis.conn(), &names).await?,
        };
        let (since, entries_read) = (snap.since, snap.entries_read);
        let (nodes, rels) = snap.into_sets(self.project.as_str());
        while_unavailable(|| self.sink.open(&self.project, self.generation)).await?;
        let mut bar = self.bar("snapshot", (nodes.len() + rels.len()) as u64);
        for entities in [nodes, rels] {
            for chunk in entities.chunks(self.batch.max(1)) {
                self.apply(chunk, since, report).await?;
                report.snapshot_entities += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
        }
        self.apply(&[], since, report).await?;
        bar.finish();
        Ok((since, entries_read))
    }

    /// Applies the stream from `start` (inclusive) to its end.
    pub async fn stream_from(&mut self, start: StreamId, report: &mut RebuildReport) -> anyhow::Result<()> {
        let key = RedisNames::new(&self.project).cdc_stream();
        let mut conn = self.redis.conn();
        let total: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        let mut bar = self.bar("stream", total);
        let mut next = start;
        loop {
            let reply: Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(next.to_string())
                .arg("+")
                .arg("COUNT")
                .arg(self.batch.max(1))
                .query_async(&mut conn)
                .await?;
            let entries: Vec<Entry> = range_reply(reply);
            let Some(last) = entries.last().map(|e| e.id) else { break };
            let mut sets = Vec::with_capacity(entries.len());
            for entry in &entries {
                let body = entry.body.as_deref().unwrap_or_default();
                match ChangeSet::from_stream_entry(&entry.id.to_string(), body) {
                    Ok(set) => sets.push(set),
                    Err(e) => report.skipped.push(format!("{}: {e}", entry.id)),
                }
            }
            report.stream_changes += sets.iter().map(|s| s.changes.len() as u64).sum::<u64>();
            // Whole change sets per commit; the page's last commit records its last entry, even a skipped one.
            let mut rest = sets.as_slice();
            loop {
                let (now, after) = rest.split_at(commit_len(rest.iter().map(|s| s.changes.len()), self.batch));
                let upto = now.last().filter(|_| !after.is_empty()).map_or(last, |s| s.id);
                self.apply(now, upto, report).await?;
                rest = after;
                if rest.is_empty() {
                    break;
                }
            }
            report.stream_entries += entries.len() as u64;
            bar.inc(entries.len() as u64);
            if let Ok(len) = redis::cmd("XLEN").arg(&key).query_async::<u64>(&mut conn).await {
                bar.set_total(len);
            }
            next = last.successor();
        }
        bar.finish();
        Ok(())
    }

    /// Applies `sets` recording `last`, leaving out (and reporting) the entries the sink refuses, each whole.
    async fn apply(&mut self, sets: &[ChangeSet], last: StreamId, report: &mut RebuildReport) -> anyhow::Result<()> {
        let last = last.max(self.recorded);
        let mut rest = sets;
        loop {
            match Plan::build(rest, last) {
                Ok(plan) => match self.commit(&plan).await {
                    Ok(()) => break,
                    Err(SinkError::Rejected(e)) if rest.len() > 1 => {
                        warn!(error = %e, "the sink refused a batch; applying it entry by entry");
                        for set in rest {
                            match self.commit(&Plan::build([set], last).expect("built before")).await {
                                Ok(()) => {}
                                Err(e @ SinkError::Rejected(_)) => report.skipped.push(format!("{}: {e}", set.id)),
                                Err(e) => bail!(e),
                            }
                        }
                        break;
                    }
                    Err(e @ SinkError::Rejected(_)) if rest.len() == 1 => {
                        report.skipped.push(format!("{}: {e}", rest[0].id));
                        break;
                    }
                    Err(e) => bail!(e),
                },
                Err(bad) => {
                    if bad.index > 0 {
                        let plan = Plan::build(&rest[..bad.index], last).expect("the entries before the first bad one");
                        self.commit(&plan).await?;
                    }
                    report.skipped.push(bad.to_string());
                    rest = &rest[bad.index + 1..];
                }
            }
        }
        self.recorded = last;
        report.last_id = Some(last);
        Ok(())
    }

    /// One commit, retried while the sink is unavailable.
    async fn commit(&self, plan: &Plan) -> Result<(), SinkError> {
        let writer = Writer { generation: self.generation, recorded: self.recorded };
        while_unavailable(|| self.sink.apply(&self.project, writer, plan)).await
    }

    fn bar(&self, label: &str, total: u64) -> ProgressBar {
        let mut bar = ProgressBar::new(label, total);
        if !self.show_progress {
            bar.silence();
        }
        bar
    }
}

/// Runs `op` again, for up to ~30 s, while the sink answers unavailable (a restart, or a Memgraph transaction
/// conflicting with the previous owner's last one).
pub async fn while_unavailable<T, F, Fut>(mut op: F) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        match op().await {
            Err(SinkError::Unavailable(e)) if wait < Duration::from_secs(30) => {
                warn!(error = %e, "sink unavailable; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            other => return other,
        }
    }
}
