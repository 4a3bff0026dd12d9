//! `POST /api/graph/batch`: many operations in one request, applied in order, in chunks that are each atomic.

use std::collections::BTreeMap;

use axum::{extract::State, http::StatusCode, Json};
use codegraph_shared::{
    functions::{self, Expect, Mutation, Outcome, Status},
    graph::Node,
    http::ApiError,
    telemetry::current_traceparent,
};
use serde::{Deserialize, Serialize};

use super::relationships::RelationshipInput;
use crate::{
    extract::{Body, Project, ProjectParam},
    routes::ErrorBody,
    state::AppState,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub operations: Vec<BatchOperation>,
}

/// One operation: `{"op": "upsert_node", "node": {…}}`, `{"op": "upsert_relationship", "relationship": {…}}`,
/// `{"op": "delete_node", "id": "…"}` or `{"op": "delete_relationship", "id": "…"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BatchOperation {
    UpsertNode { node: Node },
    UpsertRelationship { relationship: RelationshipInput },
    DeleteNode { id: String },
    DeleteRelationship { id: String },
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperationResult {
    pub id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// Operations applied (all of them, on success).
    pub applied: usize,
    /// Atomic Function calls the batch took.
    pub chunks: usize,
    /// Changes written, including relationships deleted with their nodes.
    pub events: u64,
    /// The stream ID of the last change set written, if any.
    pub last_event_id: Option<String>,
    /// The stream IDs of the change sets written, in order: one per chunk that changed something.
    pub change_sets: Vec<String>,
    /// Operations by outcome: created, updated, unchanged, deleted, not_found.
    pub counts: BTreeMap<&'static str, usize>,
    /// One entry per operation, in request order.
    pub results: Vec<OperationResult>,
}

fn to_mutation(index: usize, op: BatchOperation) -> Result<(String, Mutation), ApiError> {
    let at = |e: ApiError| ApiError { message: format!("operation {index}: {}", e.message), ..e };
    Ok(match op {
        BatchOperation::UpsertNode { node } => {
            node.validate().map_err(|e| at(e.into()))?;
            (node.id.clone(), Mutation::UpsertNode(node, Expect::Any))
        }
        BatchOperation::UpsertRelationship { relationship } => {
            let r = relationship.into_relationship().map_err(at)?;
            (r.id.clone(), Mutation::UpsertRelationship(r, Expect::Any))
        }
        BatchOperation::DeleteNode { id } => (id.clone(), Mutation::DeleteNode(id, Expect::Any)),
        BatchOperation::DeleteRelationship { id } => (id.clone(), Mutation::DeleteRelationship(id, Expect::Any)),
    })
}

/// Apply many operations in order. Every operation is checked before anything is written; then they are
/// applied in chunks of at most `api.chunk_size` operations and about 256 KiB of changes, each chunk one atomic
/// Function call written as one change set (one stream entry, one frame). An upsert that changes nothing produces
/// no change; a chunk that changes nothing, no entry. If a chunk is refused (e.g. a relationship to a missing node), the chunks
/// before it stay applied and the error's `details` say how far the batch got. A chunk whose node deletes would take
/// more than 500 relationships with them deletes those relationships first, in change sets of their own of at most
/// 500 (listed in `change_sets` before the chunk's), so no call blocks Redis for long.
#[utoipa::path(post, path = "/batch", tag = "batch", params(ProjectParam), request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    project: Project,
    Body(request): Body<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    let limit = state.settings.api.max_batch_operations;
    if request.operations.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("{} operations; at most {limit} per batch", request.operations.len()),
        ));
    }
    let (ids, mutations): (Vec<String>, Vec<Mutation>) =
        request.operations.into_iter().enumerate().map(|(i, op)| to_mutation(i, op)).collect::<Result<_, _>>()?;

    let writer = state.writer(&project.0);
    let tp = current_traceparent();
    let mut conn = state.conn();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(mutations.len());
    let chunks = functions::calls(&mutations, state.settings.api.chunk_size);
    let mut change_sets = Vec::new();
    // Relationships deleted ahead of their nodes (cascades over MAX_CASCADE), each in change sets of their own.
    let mut detached_events = 0u64;
    for (n, chunk) in chunks.iter().enumerate() {
        match writer.mutate_detaching(&mut conn, chunk, tp.as_deref()).await {
            Ok((done, detached)) => {
                state.metrics.record_outcomes(&done);
                detached_events += detached.relationships;
                change_sets.extend(detached.change_sets);
                change_sets.extend(done.iter().find_map(|o| o.event_id.clone()));
                outcomes.extend(done);
            }
            Err(e) => {
                let applied = outcomes.len();
                let details =
                    serde_json::json!({"applied_operations": applied, "applied_chunks": n, "failed_chunk": n});
                let e = ApiError::from(e);
                return Err(if applied > 0 { e.with_details(details) } else { e });
            }
        }
    }

    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut events = detached_events;
    let mut last_event_id = change_sets.last().cloned();
    for o in &outcomes {
        *counts.entry(o.status.as_str()).or_default() += 1;
        if let Some(id) = &o.event_id {
            events += 1 + u64::from(o.cascaded);
            last_event_id = Some(id.clone());
        }
    }
    debug_assert!(outcomes.iter().all(|o| o.status != Status::Unchanged || o.event_id.is_none()));
    Ok(Json(BatchResponse {
        applied: outcomes.len(),
        chunks: chunks.len(),
        events,
        last_event_id,
        change_sets,
        counts,
        results: ids.into_iter().zip(outcomes).map(|(id, outcome)| OperationResult { id, outcome }).collect(),
    }))
}
