//! `stream-consumer replay`: rebuilds one project in one sink.
//!
//! - from the start (default, or `--from 0`): clears the project's graph and applies the whole stream;
//! - `--from <id>`: applies the stream from `<id>` over what the sink holds (versions keep newer state; an entity
//!   deleted later in the stream may show again until that delete is replayed, which the replay always reaches);
//! - `--from-snapshot`: clears, writes graph-api's snapshot (or the Redis hashes), then the stream after it.
//!
//! The replay takes the project's ownership lease from the live consumer (which stops within a tick and takes the
//! project back afterwards, skipping what the replay recorded), and records the last applied ID like a consumer.
//! Events that cannot be applied are skipped and counted (the live consumer dead-letters them).

use std::time::Duration;

use anyhow::{bail, Context};
use redis::Value;
use serde::Serialize;
use tracing::warn;

use codegraph_shared::{
    event::{CdcEvent, StreamId},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
};

use crate::{
    lease::Lease,
    progress::ProgressBar,
    settings::ConsumerSettings,
    sinks::{Plan, Sink, SinkError},
    snapshot,
    stream::parse_entry,
};

/// Where a replay starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    Start,
    Id(StreamId),
    /// From graph-api's snapshot at this base URL, or from Redis when `None`.
    Snapshot {
        api: Option<String>,
    },
}

#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub snapshot_entities: u64,
    pub stream_events: u64,
    pub skipped: Vec<String>,
    pub last_id: Option<StreamId>,
}

pub struct Replay<'a, S: Sink> {
    pub sink: &'a S,
    pub redis: &'a RedisHandle,
    pub settings: &'a ConsumerSettings,
    pub project: ProjectName,
    pub batch: usize,
    pub show_progress: bool,
}

impl<S: Sink> Replay<'_, S> {
    pub async fn run(&self, from: ReplayFrom) -> anyhow::Result<ReplayReport> {
        let names = RedisNames::new(&self.project);
        let lease = self.take_lease(&names).await?;
        let renewer = {
            let (lease, redis, every) = (lease.clone(), self.redis.clone(), self.settings.tick());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = lease.renew(&mut redis.conn()).await;
                }
            })
        };
        let result = self.replay(&names, from).await;
        renewer.abort();
        let _ = lease.release(&mut self.redis.conn()).await;
        result
    }

    /// Takes the lease even from a live consumer, then gives that consumer's worker time to notice and stop.
    async fn take_lease(&self, names: &RedisNames) -> anyhow::Result<Lease> {
        let owner = format!("{}:replay", self.settings.consumer_name());
        let lease = Lease { key: names.cdc_owner(self.sink.name()), owner, ttl_ms: self.settings.lease_ms };
        let mut conn = self.redis.conn();
        let previous: Option<String> = redis::cmd("SET")
            .arg(&lease.key)
            .arg(&lease.owner)
            .arg("PX")
            .arg(lease.ttl_ms)
            .arg("GET")
            .query_async(&mut conn)
            .await
            .context("take the project's lease")?;
        if let Some(previous) = previous.filter(|p| *p != lease.owner) {
            eprintln!("took the project from {previous}; waiting for it to stop");
            tokio::time::sleep(self.settings.tick() * 2 + Duration::from_millis(500)).await;
        }
        Ok(lease)
    }

    async fn replay(&self, names: &RedisNames, from: ReplayFrom) -> anyhow::Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let start = match &from {
            ReplayFrom::Start => {
                self.sink.clear(&self.project).await?;
                StreamId::ZERO
            }
            ReplayFrom::Id(id) => *id,
            ReplayFrom::Snapshot { api } => self.load_snapshot(names, api.as_deref(), &mut report).await?.0.successor(),
        };
        self.sink.open(&self.project).await?;
        self.replay_stream(names, start, &mut report).await?;
        Ok(report)
    }

    /// Clears the project in the sink and writes a snapshot (graph-api's at `api`, else read from Redis), recording
    /// the stream ID it is consistent with; returns that ID and, when known, how many entries the stream had
    /// received up to it. Used by `replay --from-snapshot` and by a worker that
    /// found its next entries trimmed away (it owns the lease already).
    pub async fn load_snapshot(
        &self,
        names: &RedisNames,
        api: Option<&str>,
        report: &mut ReplayReport,
    ) -> anyhow::Result<(StreamId, Option<u64>)> {
        self.sink.clear(&self.project).await?;
        let snap = match api {
            Some(api) => snapshot::from_graph_api(api, self.project.as_str(), |_| {}).await?,
            None => snapshot::from_redis(&mut self.redis.conn(), names).await?,
        };
        let (since, entries_read) = (snap.since, snap.entries_read);
        let (nodes, rels) = snap.into_events(self.project.as_str());
        self.sink.open(&self.project).await?;
        let mut bar = self.bar("snapshot", (nodes.len() + rels.len()) as u64);
        for events in [nodes, rels] {
            for chunk in events.chunks(self.batch.max(1)) {
                self.apply(chunk, since, report).await?;
                report.snapshot_entities += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
        }
        self.apply(&[], since, report).await?;
        bar.finish();
        Ok((since, entries_read))
    }

    async fn replay_stream(
        &self,
        names: &RedisNames,
        start: StreamId,
        report: &mut ReplayReport,
    ) -> anyhow::Result<()> {
        let key = names.cdc_stream();
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
            let Value::Array(entries) = reply else { break };
            if entries.is_empty() {
                break;
            }
            let entries: Vec<_> = entries.into_iter().filter_map(parse_entry).collect();
            let Some(last) = entries.last().map(|e| e.id) else { break };
            let mut events = Vec::with_capacity(entries.len());
            for entry in &entries {
                let body = entry.body.as_deref().unwrap_or_default();
                match CdcEvent::from_stream_entry(&entry.id.to_string(), body) {
                    Ok(e) => events.push(e),
                    Err(e) => report.skipped.push(format!("{}: {e}", entry.id)),
                }
            }
            self.apply(&events, last, report).await?;
            report.stream_events += entries.len() as u64;
            bar.inc(entries.len() as u64);
            if let Ok(len) = redis::cmd("XLEN").arg(&key).query_async::<u64>(&mut conn).await {
                bar.set_total(len);
            }
            next = last.successor();
        }
        bar.finish();
        Ok(())
    }

    /// Applies `events` recording `last`, leaving out (and reporting) the ones that cannot be applied.
    async fn apply(&self, events: &[CdcEvent], last: StreamId, report: &mut ReplayReport) -> anyhow::Result<()> {
        let mut rest = events;
        loop {
            match Plan::build(rest, last) {
                Ok(plan) => match self.commit(&plan).await {
                    Ok(()) => break,
                    Err(SinkError::Rejected(e)) if rest.len() > 1 => {
                        warn!(error = %e, "the sink refused a batch; applying it event by event");
                        for event in rest {
                            let one = std::slice::from_ref(event);
                            if let Err(e) = self.commit(&Plan::build(one, last).expect("built before")).await {
                                report.skipped.push(format!("{}: {e}", event.id));
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        if rest.len() == 1 {
                            report.skipped.push(format!("{}: {e}", rest[0].id));
                            break;
                        }
                        bail!(e)
                    }
                },
                Err(bad) => {
                    if bad.index > 0 {
                        let plan = Plan::build(&rest[..bad.index], last).expect("the events before the first bad one");
                        self.commit(&plan).await?;
                    }
                    report.skipped.push(bad.to_string());
                    rest = &rest[bad.index + 1..];
                }
            }
        }
        report.last_id = Some(last);
        Ok(())
    }

    async fn commit(&self, plan: &Plan) -> Result<(), SinkError> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.sink.apply(&self.project, plan).await {
                Err(SinkError::Unavailable(e)) if wait < Duration::from_secs(30) => {
                    warn!(error = %e, "sink unavailable; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
    }

    fn bar(&self, label: &str, total: u64) -> ProgressBar {
        let mut bar = ProgressBar::new(label, total);
        if !self.show_progress {
            bar.silence();
        }
        bar
    }
}
