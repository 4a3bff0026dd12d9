//! `stream-consumer dlq redrive`: applies dead letters to the sink again (after the cause was fixed) and removes
//! those that were applied or are no longer needed.
//!
//! A dead letter is re-applied only while it is still the entity's latest state in Redis (its version equals the
//! current one); an older one was superseded by a later event the sink already has, and re-applying it could bring
//! back a deleted entity, so it is dropped instead. Like `replay`, it takes the project's lease from the live
//! consumer with a new generation while it writes.

use anyhow::Context;
use serde::Serialize;

use codegraph_shared::{
    event::{CdcEvent, EventType},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
};

use crate::{
    commands::HeldLease,
    dead_letters::DeadLetters,
    settings::ConsumerSettings,
    sinks::{Plan, Sink, Writer},
};

#[derive(Debug, Default, Serialize)]
pub struct RedriveReport {
    pub applied: Vec<String>,
    pub superseded: Vec<String>,
    pub still_failing: Vec<String>,
}

/// Most dead letters handled in one run.
pub const MAX_REDRIVE: usize = 10_000;

pub async fn redrive<S: Sink>(
    sink: &S,
    redis: &RedisHandle,
    settings: &ConsumerSettings,
    project: &ProjectName,
    only: Option<&str>,
) -> anyhow::Result<RedriveReport> {
    let lease = HeldLease::take_over(redis, settings, sink.name(), project).await?;
    let result = redrive_letters(sink, redis, lease.generation(), project, only).await;
    lease.release().await;
    result
}

async fn redrive_letters<S: Sink>(
    sink: &S,
    redis: &RedisHandle,
    generation: u64,
    project: &ProjectName,
    only: Option<&str>,
) -> anyhow::Result<RedriveReport> {
    let names = RedisNames::new(project);
    let dlq = DeadLetters::new(&names, sink.name());
    let mut conn = redis.conn();
    let mut report = RedriveReport::default();
    let recorded = sink.open(project, generation).await?.context("the sink holds no record of the project")?;
    let writer = Writer { generation, recorded };
    for letter in dlq.list(&mut conn, MAX_REDRIVE).await? {
        if only.is_some_and(|id| id != letter.dlq_id && id != letter.event_id.to_string()) {
            continue;
        }
        let label = format!("{} (event {})", letter.dlq_id, letter.event_id);
        let event = match CdcEvent::from_stream_entry(&letter.event_id.to_string(), &letter.body) {
            Ok(e) => e,
            Err(e) => {
                report.still_failing.push(format!("{label}: {e}"));
                continue;
            }
        };
        let field = match event.event_type {
            EventType::NodeAdded | EventType::NodeUpdated | EventType::NodeDeleted => {
                Some(format!("n:{}", event.entity.id))
            }
            EventType::RelationshipAdded | EventType::RelationshipUpdated | EventType::RelationshipDeleted => {
                Some(format!("r:{}", event.entity.id))
            }
            _ => None,
        };
        if let Some(field) = field {
            let current: Option<u64> =
                redis::cmd("HGET").arg(names.versions()).arg(field).query_async(&mut conn).await?;
            if current != Some(event.version) {
                dlq.remove(&mut conn, &letter.dlq_id).await?;
                report.superseded.push(label);
                continue;
            }
        }
        // Record the ID the sink already had: a dead letter is older than what the sink applied since.
        let plan = Plan::build(std::slice::from_ref(&event), recorded);
        let outcome = match plan {
            Ok(plan) => sink.apply(project, writer, &plan).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                dlq.remove(&mut conn, &letter.dlq_id).await?;
                report.applied.push(label);
            }
            Err(e) => report.still_failing.push(format!("{label}: {e}")),
        }
    }
    Ok(report)
}
