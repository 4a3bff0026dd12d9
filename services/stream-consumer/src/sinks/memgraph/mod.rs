//! The Memgraph sink: the same mapping and guarantees as the FalkorDB sink, over Bolt ([`bolt`], a client of our
//! own), all projects in Memgraph's one database (a `project` property on every node, `_Meta` per project).
//!
//! A plan is one explicit transaction ([`query::plan_statements`], ending with the statement that records the
//! plan's last stream ID), so the ID is recorded only with the writes, and every change set of the plan becomes
//! visible to readers at its commit, whole. Indexes are created on the first `open`.
//! Labels a project's nodes may carry are the kinds found at `open` plus those written since, so a node that
//! changes kind loses its old label.

pub mod bolt;
mod config;
pub mod query;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
};

use codegraph_shared::{event::StreamId, project::ProjectName};
use serde_json::json;

use bolt::{BoltClient, BoltError, Statement, Value};
pub use config::MemgraphSettings;

use super::{refusal, Plan, Sink, SinkError, Writer};

pub struct MemgraphSink {
    client: BoltClient,
    inline_parameters: bool,
    indexed: AtomicBool,
    labels: Mutex<HashMap<ProjectName, BTreeSet<String>>>,
}

impl MemgraphSink {
    pub const NAME: &'static str = "memgraph";

    pub fn new(settings: &MemgraphSettings) -> Result<Self, SinkError> {
        let target = settings.target().map_err(|e| SinkError::Rejected(format!("memgraph url: {e}")))?;
        Ok(Self {
            client: BoltClient::new(target),
            inline_parameters: settings.inline_parameters,
            indexed: AtomicBool::new(false),
            labels: Mutex::new(HashMap::new()),
        })
    }

    pub fn client(&self) -> &BoltClient {
        &self.client
    }

    /// A read query with parameters (a JSON object); each record as JSON values.
    pub async fn read(&self, text: &str, params: serde_json::Value) -> Result<Vec<Vec<serde_json::Value>>, SinkError> {
        let s = self.statement(&query::Statement { text: text.to_owned(), params });
        let result = self.client.run(&s.query, s.params).await.map_err(classify)?;
        Ok(result.records.into_iter().map(|r| r.iter().map(Value::to_json).collect()).collect())
    }

    fn statement(&self, s: &query::Statement) -> Statement {
        if self.inline_parameters {
            Statement { query: s.inlined(), params: Value::Map(Vec::new()) }
        } else {
            Statement { query: s.text.clone(), params: Value::from(&s.params) }
        }
    }

    async fn create_indexes(&self) -> Result<(), SinkError> {
        if self.indexed.load(Ordering::Relaxed) {
            return Ok(());
        }
        for index in query::INDEXES {
            // Index creation runs outside explicit transactions in Memgraph; FalkorDB refuses a second one.
            match self.client.run(index, Value::Map(Vec::new())).await {
                Err(BoltError::Failure { message, .. }) if message.contains("already indexed") => {}
                other => {
                    other.map_err(classify)?;
                }
            }
        }
        self.indexed.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Transient trouble (connection, deadline, a busy server) is retried; anything else is the batch's fault.
fn classify(e: BoltError) -> SinkError {
    if e.is_transient() {
        SinkError::Unavailable(e.to_string())
    } else {
        SinkError::Rejected(e.to_string())
    }
}

impl MemgraphSink {
    /// The project's record: (fence, recorded ID); `None`: no record.
    async fn record(&self, project: &ProjectName) -> Result<Option<(u64, StreamId)>, SinkError> {
        let rows = self.read(query::READ_META, json!({"project": project.as_str()})).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let int = |i: usize| row.get(i).and_then(|v| v.as_u64());
        match (int(0), int(1), int(2)) {
            (Some(fence), Some(ms), Some(seq)) => Ok(Some((fence, StreamId::new(ms, seq)))),
            // A record of an older version (no fence): treated as none, so the project is rebuilt once.
            _ => Ok(None),
        }
    }

    /// Why a guard refused `writer`'s plan.
    async fn refusal(&self, project: &ProjectName, writer: Writer, last: Option<StreamId>) -> SinkError {
        match self.record(project).await {
            Ok(Some((fence, recorded))) => refusal(fence, recorded, writer, last),
            Ok(None) => SinkError::Lost(format!("project {project} has no _Meta record")),
            Err(e) => e,
        }
    }
}

impl Sink for MemgraphSink {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn open(&self, project: &ProjectName, generation: u64) -> Result<Option<StreamId>, SinkError> {
        self.create_indexes().await?;
        let p = json!({"project": project.as_str()});
        let kinds = self.read("MATCH (n:Node {project: $project}) RETURN DISTINCT n.kind", p).await?;
        let labels: BTreeSet<String> =
            kinds.into_iter().filter_map(|row| row.into_iter().next()?.as_str().map(str::to_owned)).collect();
        self.labels.lock().expect("labels lock").insert(project.clone(), labels);
        let Some((_, recorded)) = self.record(project).await? else { return Ok(None) };
        let raise = self.statement(&query::fenced(query::RAISE_FENCE, project.as_str(), generation));
        let raised = self.client.run(&raise.query, raise.params).await.map_err(classify)?;
        if !matches!(raised.records.first().and_then(|r| r.first()), Some(Value::Int(1))) {
            let writer = Writer { generation, recorded };
            return Err(self.refusal(project, writer, None).await);
        }
        Ok(Some(recorded))
    }

    async fn apply(&self, project: &ProjectName, writer: Writer, plan: &Plan) -> Result<(), SinkError> {
        let mut labels = self.labels.lock().expect("labels lock").get(project).cloned().unwrap_or_default();
        labels.extend(plan.kinds().map(str::to_owned));
        let statements: Vec<Statement> =
            query::plan_statements(project.as_str(), plan, &labels).iter().map(|s| self.statement(s)).collect();
        let guard = self.statement(&query::guard(project.as_str(), writer, plan));
        if !self.client.guarded_transaction(Some(guard), &statements).await.map_err(classify)? {
            return Err(self.refusal(project, writer, Some(plan.last_id)).await);
        }
        self.labels.lock().expect("labels lock").insert(project.clone(), labels);
        Ok(())
    }

    async fn reset(&self, project: &ProjectName, generation: u64) -> Result<(), SinkError> {
        let guard = self.statement(&query::fenced(query::RESET_GUARD, project.as_str(), generation));
        let statements: Vec<Statement> =
            query::reset_statements(project.as_str(), generation).iter().map(|s| self.statement(s)).collect();
        if !self.client.guarded_transaction(Some(guard), &statements).await.map_err(classify)? {
            let writer = Writer { generation, recorded: StreamId::ZERO };
            return Err(self.refusal(project, writer, None).await);
        }
        self.labels.lock().expect("labels lock").remove(project);
        Ok(())
    }

    async fn recorded(&self, project: &ProjectName) -> Result<Option<StreamId>, SinkError> {
        Ok(self.record(project).await?.map(|(_, id)| id))
    }

    async fn ping(&self) -> bool {
        self.client.run("RETURN 1", Value::Map(Vec::new())).await.is_ok()
    }
}
