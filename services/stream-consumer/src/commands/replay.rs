//! `stream-consumer replay`: rebuilds one project in one sink.
//!
//! - from the start (default, or `--from 0`): empties the project's graph and applies the whole stream;
//! - `--from <id>`: applies the stream from `<id>` over what the sink holds (versions keep newer state; an entity
//!   deleted later in the stream may show again until that delete is replayed, which the replay always reaches);
//!   the recorded ID never goes back, so the sink must have a record;
//! - `--from-snapshot`: empties, writes graph-api's snapshot (or the Redis hashes), then the stream after it.
//!
//! The replay takes the project's lease from the live consumer with a new generation ([`HeldLease`]) and
//! raises the sink's fence to it before it writes anything else (the reset, or opening the sink for
//! `--from <id>`): that is the confirmation it waits for, since from then on the sink refuses every write of the
//! previous owner, even one paused mid-batch. The consumer stops applying the project when its renewal or its
//! next commit fails, and takes it back after the replay, continuing after what the replay recorded.

use anyhow::Context;
use serde::Serialize;

use codegraph_shared::{event::StreamId, project::ProjectName, redis_handle::RedisHandle};

use crate::{
    commands::HeldLease,
    rebuild::{while_unavailable, Rebuild, RebuildReport},
    settings::ConsumerSettings,
    sinks::Sink,
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

#[derive(Debug, Serialize)]
pub struct ReplayReport {
    /// The consumer the project was taken from, if one held it.
    pub took_over_from: Option<String>,
    /// The lease generation the replay wrote under (the sink's fence afterwards).
    pub generation: u64,
    #[serde(flatten)]
    pub rebuild: RebuildReport,
}

pub async fn replay<S: Sink>(
    sink: &S,
    redis: &RedisHandle,
    settings: &ConsumerSettings,
    project: ProjectName,
    batch: usize,
    from: ReplayFrom,
) -> anyhow::Result<ReplayReport> {
    let lease = HeldLease::take_over(redis, settings, sink.name(), &project).await?;
    let generation = lease.generation();
    let previous = lease.previous.clone();
    let mut rebuild = Rebuild {
        sink,
        redis,
        project: project.clone(),
        generation,
        recorded: StreamId::ZERO,
        batch,
        show_progress: true,
    };
    let mut report = RebuildReport::default();
    let result = async {
        let start = match &from {
            ReplayFrom::Start => {
                while_unavailable(|| sink.reset(&project, generation)).await?;
                StreamId::ZERO
            }
            ReplayFrom::Id(id) => *id,
            ReplayFrom::Snapshot { api } => rebuild.from_snapshot(api.as_deref(), &mut report).await?.0.successor(),
        };
        let recorded = while_unavailable(|| sink.open(&project, generation)).await?;
        rebuild.recorded =
            recorded.context("the sink holds no record of the project: replay from the start or from a snapshot")?;
        if let Some(previous) = &previous {
            eprintln!("took the project from {previous}; the sink now refuses its writes (generation {generation})");
        }
        rebuild.stream_from(start, &mut report).await
    }
    .await;
    lease.release().await;
    result?;
    Ok(ReplayReport { took_over_from: previous, generation, rebuild: report })
}
