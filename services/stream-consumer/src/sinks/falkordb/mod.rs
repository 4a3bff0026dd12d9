//! The FalkorDB sink: one graph per project (`<graph_prefix><project>`), Cypher over the Redis protocol.
//!
//! Mapping: a node per Redis node with labels `Node` and its kind, `MERGE` on the stable `id`; an edge per
//! relationship with its type as the relationship type, `MERGE` on `id` between its endpoints; properties as
//! [`crate::sinks::mapping`] says, `version` on each. The `_Meta` node holds the last applied stream ID, written in
//! the same (atomic) query as the plan's last writes.

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

use super::{Plan, Sink, SinkError};

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
            client: FalkorClient::open(&settings.url)?,
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

impl Sink for FalkorDbSink {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn open(&self, project: &ProjectName) -> Result<Option<StreamId>, SinkError> {
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
        let meta = self.client.read(&graph, query::READ_META).await?;
        let last = meta.first().and_then(|row| row.first()).and_then(|v| v.as_str()).map(str::parse).transpose();
        last.map_err(|e| SinkError::Rejected(format!("graph {graph}: bad _Meta.last_id: {e}")))
    }

    async fn apply(&self, project: &ProjectName, plan: &Plan) -> Result<(), SinkError> {
        let graph = self.graph(project);
        let mut labels = self.known_labels(project);
        labels.extend(plan.kinds().map(str::to_owned));
        for q in query::plan_queries(plan, &labels) {
            self.client.write(&graph, &q).await?;
        }
        self.labels.lock().expect("labels lock").insert(project.clone(), labels);
        Ok(())
    }

    async fn clear(&self, project: &ProjectName) -> Result<(), SinkError> {
        self.client.delete_graph(&self.graph(project)).await?;
        self.labels.lock().expect("labels lock").remove(project);
        Ok(())
    }

    async fn ping(&self) -> bool {
        self.client.ping().await
    }
}
