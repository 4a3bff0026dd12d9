//! `stream-consumer dlq redrive`: applies dead letters to the sink again (after the cause was fixed) and removes
//! those that were applied or are no longer needed.
//!
//! A dead letter is a whole stream entry, and is re-applied as one change set in one commit, so the sink shows its
//! changes together. Of its graph changes only those still their entity's latest state in Redis (the version
//! equals the current one) are applied; an older one was superseded by a later entry the sink already has, and
//! re-applying it could bring back a deleted entity. A letter none of whose changes is current is dropped as
//! superseded. Like `replay`, it takes the project's lease from the live consumer with a new generation while
//! it writes.

use anyhow::Context;
use serde::Serialize;

use codegraph_shared::{
    event::{Change, ChangeSet, EventType},
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
        if only.is_some_and(|id| id != letter.dlq_id && id != letter.entry_id.to_string()) {
            continue;
        }
        let label = format!("{} (entry {})", letter.dlq_id, letter.entry_id);
        let mut set = match ChangeSet::from_stream_entry(&letter.entry_id.to_string(), &letter.body) {
            Ok(set) => set,
            Err(e) => {
                report.still_failing.push(format!("{label}: {e}"));
                continue;
            }
        };
        let all = set.changes.len();
        let fields: Vec<Option<String>> = set.changes.iter().map(version_field).collect();
        let asked: Vec<&String> = fields.iter().flatten().collect();
        let mut versions = if asked.is_empty() {
            Vec::new()
        } else {
            redis::cmd("HMGET").arg(names.versions()).arg(&asked).query_async::<Vec<Option<u64>>>(&mut conn).await?
        }
        .into_iter();
        let mut current = Vec::with_capacity(all);
        for (i, (mut change, field)) in std::mem::take(&mut set.changes).into_iter().zip(&fields).enumerate() {
            if field.is_some() && versions.next().flatten() != Some(change.version) {
                continue;
            }
            // Kept under its position in the entry, so an error names the change as the entry has it.
            change.index = change.index.or(Some(i as u32));
            current.push(change);
        }
        if current.is_empty() {
            dlq.remove(&mut conn, &letter.dlq_id).await?;
            report.superseded.push(label);
            continue;
        }
        let label = match all - current.len() {
            0 => label,
            n => format!("{label}, without {n} of its {all} changes (superseded)"),
        };
        set.changes = current;
        // Record the ID the sink already had: a dead letter is older than what the sink applied since.
        let outcome = match Plan::build([&set], recorded) {
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

/// The field of `code_graph:{p}:versions` that holds the version of the change's entity; `None`: not a graph
/// entity (a job event, `graph_reset`).
fn version_field(change: &Change) -> Option<String> {
    match change.event_type {
        EventType::NodeAdded | EventType::NodeUpdated | EventType::NodeDeleted => {
            Some(format!("n:{}", change.entity.id))
        }
        EventType::RelationshipAdded | EventType::RelationshipUpdated | EventType::RelationshipDeleted => {
            Some(format!("r:{}", change.entity.id))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use codegraph_shared::{
        event::StreamId,
        functions::{Expect, GraphWriter, Mutation, PublishMode},
        graph::Relationship,
        stream::{range_reply, Entry},
        testing::RedisServer,
    };
    use serde_json::json;

    use super::*;
    use crate::{
        sinks::falkordb::{FalkorDbSettings, FalkorDbSink},
        test_support::{dump_falkordb, start_falkordb},
    };

    fn node(id: &str, name: &str) -> Mutation {
        Mutation::UpsertNode(
            serde_json::from_value(json!({"id": id, "kind": "file", "name": name})).unwrap(),
            Expect::Any,
        )
    }

    #[tokio::test]
    async fn a_letter_is_applied_as_one_set_without_its_superseded_changes() {
        let (redis, falkor) = (RedisServer::start(), start_falkordb(&[]));
        let project = ProjectName::parse("redriven").unwrap();
        let names = RedisNames::new(&project);
        let handle = RedisHandle::open(&redis.url()).unwrap();
        let mut conn = handle.conn();
        let writer = GraphWriter::new(names.clone(), 0, PublishMode::Classic);
        let rel: Relationship = serde_json::from_value(json!({
            "id": Relationship::derived_id("x1", "calls", "x2"), "type": "calls", "source": "x1", "target": "x2"
        }))
        .unwrap();
        let set =
            [node("x1", "x1"), node("x2", "x2"), node("x3", "x3"), Mutation::UpsertRelationship(rel, Expect::Any)];
        writer.mutate(&mut conn, &set, None).await.unwrap();
        // A later entry changes x3 again: the letter's change of x3 is superseded.
        writer.mutate(&mut conn, &[node("x3", "renamed")], None).await.unwrap();
        let reply: redis::Value =
            redis::cmd("XRANGE").arg(names.cdc_stream()).arg("-").arg("+").query_async(&mut conn).await.unwrap();
        let entries: Vec<Entry> = range_reply(reply);
        assert_eq!(entries.len(), 2, "one entry per call");

        // The sink has a record but none of the entries; the first is a dead letter, as if the sink had refused it.
        let sink =
            FalkorDbSink::new(&FalkorDbSettings { url: falkor.url(), graph_prefix: "t_".into(), ..Default::default() })
                .unwrap();
        sink.reset(&project, 1).await.unwrap();
        let dlq = DeadLetters::new(&names, sink.name());
        let first = &entries[0];
        dlq.send(&mut conn, first.id, first.body.as_deref().unwrap(), "refused", 5, "c").await.unwrap();

        let report = redrive(&sink, &handle, &ConsumerSettings::default(), &project, None).await.unwrap();
        assert_eq!(report.applied.len(), 1, "{report:?}");
        assert!(report.applied[0].contains("without 1 of its 4 changes"), "{report:?}");
        let dump = dump_falkordb(sink.client(), &sink.graph(&project)).await.unwrap();
        assert_eq!(dump.nodes.keys().collect::<Vec<_>>(), ["x1", "x2"], "x3's change was superseded");
        assert_eq!(dump.edges.keys().collect::<Vec<_>>(), ["x1|calls|x2"]);
        assert_eq!(dlq.len(&mut conn).await.unwrap(), 0);
        assert_eq!(sink.recorded(&project).await.unwrap(), Some(StreamId::ZERO), "a redrive moves no record");
    }
}
