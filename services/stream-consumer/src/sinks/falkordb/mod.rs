//! The FalkorDB sink: one graph per project (`<graph_prefix><project>`), Cypher over the Redis protocol.
//!
//! Mapping: a node per Redis node with labels `Node` and its kind, `MERGE` on the stable `id`; an edge per
//! relationship with its type as the relationship type, `MERGE` on `id` between its endpoints; properties as
//! [`crate::sinks::mapping`] says, `version` on each. The `_Meta` node holds the record (fence and last applied
//! stream ID), checked by every query and written in the same (atomic) query as the plan's last writes
//! ([`query`]).

mod client;
mod config;
pub mod query;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use codegraph_shared::{event::StreamId, project::ProjectName};

pub use client::FalkorClient;
pub use config::FalkorDbSettings;

use super::{refusal, Plan, Sink, SinkError, Writer};

pub struct FalkorDbSink {
    client: FalkorClient,
    graph_prefix: String,
    /// Labels each project's graph may hold, so a node that changes kind loses its old label.
    labels: Mutex<HashMap<ProjectName, BTreeSet<String>>>,
}

impl FalkorDbSink {
    pub const NAME: &'static str = "falkordb";

    pub fn new(settings: &FalkorDbSettings) -> Result<Self, SinkError> {
        Ok(Self {
            client: FalkorClient::open_with(&settings.url, &settings.tls())?,
            graph_prefix: settings.graph_prefix.clone(),
            labels: Mutex::new(HashMap::new()),
        })
    }

    /// The FalkorDB graph (key) of a project.
    pub fn graph(&self, project: &ProjectName) -> String {
        format!("{}{project}", self.graph_prefix)
    }

    pub fn client(&self) -> &FalkorClient {
        &self.client
    }

    fn known_labels(&self, project: &ProjectName) -> BTreeSet<String> {
        self.labels.lock().expect("labels lock").get(project).cloned().unwrap_or_default()
    }
}

impl FalkorDbSink {
    /// The graph's record: (fence, recorded ID); `None`: no record.
    async fn record(&self, graph: &str) -> Result<Option<(u64, StreamId)>, SinkError> {
        let rows = match self.client.read(graph, query::READ_META).await {
            // No graph at all (FalkorDB restarted without its data): no record.
            Err(SinkError::Rejected(e)) if e.contains("empty key") => return Ok(None),
            other => other?,
        };
        let Some(row) = rows.first() else { return Ok(None) };
        let int = |i: usize| row.get(i).and_then(|v| v.as_u64());
        match (int(0), int(1), int(2)) {
            (Some(fence), Some(ms), Some(seq)) => Ok(Some((fence, StreamId::new(ms, seq)))),
            // A record of an older version (no fence): treated as none, so the project is rebuilt once.
            _ => Ok(None),
        }
    }

    /// Runs a query behind a guard; when the guard refused it, says why.
    async fn guarded(&self, graph: &str, q: &str, writer: Writer, last: Option<StreamId>) -> Result<(), SinkError> {
        match self.client.write(graph, q).await {
            Err(SinkError::Rejected(e)) if query::refused(&e) => Err(match self.record(graph).await? {
                Some((fence, recorded)) => refusal(fence, recorded, writer, last),
                None => SinkError::Lost(format!("graph {graph} has no _Meta record")),
            }),
            other => other,
        }
    }
}

impl Sink for FalkorDbSink {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn open(&self, project: &ProjectName, generation: u64) -> Result<Option<StreamId>, SinkError> {
        let graph = self.graph(project);
        match self.client.write(&graph, query::CREATE_INDEX).await {
            Err(SinkError::Rejected(e)) if e.contains("already indexed") => {}
            other => other?,
        }
        let labels: BTreeSet<String> = self
            .client
            .read(&graph, query::LABELS)
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next()?.as_str().map(str::to_owned))
            .collect();
        self.labels.lock().expect("labels lock").insert(project.clone(), labels);
        let Some((_, recorded)) = self.record(&graph).await? else { return Ok(None) };
        let writer = Writer { generation, recorded };
        self.guarded(&graph, &query::raise_fence(generation), writer, None).await?;
        Ok(Some(recorded))
    }

    async fn apply(&self, project: &ProjectName, writer: Writer, plan: &Plan) -> Result<(), SinkError> {
        let graph = self.graph(project);
        let mut labels = self.known_labels(project);
        labels.extend(plan.kinds().map(str::to_owned));
        for q in query::plan_queries(plan, writer, &labels) {
            self.guarded(&graph, &q, writer, Some(plan.last_id)).await?;
        }
        self.labels.lock().expect("labels lock").insert(project.clone(), labels);
        Ok(())
    }

    async fn reset(&self, project: &ProjectName, generation: u64) -> Result<(), SinkError> {
        let graph = self.graph(project);
        let writer = Writer { generation, recorded: StreamId::ZERO };
        self.guarded(&graph, &query::reset(generation), writer, None).await?;
        self.labels.lock().expect("labels lock").remove(project);
        Ok(())
    }

    async fn recorded(&self, project: &ProjectName) -> Result<Option<StreamId>, SinkError> {
        Ok(self.record(&self.graph(project)).await?.map(|(_, id)| id))
    }

    async fn ping(&self) -> bool {
        self.client.ping().await
    }
}
