//! `/api/graph/nodes`: create, read, patch and delete one node.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use codegraph_shared::redis_handle::RedisConn;
use codegraph_shared::{
    functions::{Expect, Mutation, MutationError, Outcome},
    graph::Node,
    http::ApiError,
    names::RedisNames,
    telemetry::current_traceparent,
};
use redis::RedisError;
use serde::{Deserialize, Serialize};

use crate::{
    extract::{Body, Project, ProjectParam},
    routes::ErrorBody,
    state::AppState,
    store,
};

/// What a single-entity write did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WriteResult {
    pub id: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How often a read-modify-write (PATCH) retries when another writer got in between.
const PATCH_ATTEMPTS: usize = 32;

pub(crate) async fn apply_one(state: &AppState, project: &Project, op: Mutation) -> Result<Outcome, ApiError> {
    let tp = current_traceparent();
    let outcomes = state.writer(&project.0).mutate(&mut state.conn(), &[op], tp.as_deref()).await?;
    state.metrics.record_outcomes(&outcomes);
    outcomes.into_iter().next().ok_or_else(|| ApiError::internal("the Function library returned no outcome"))
}

pub(crate) fn missing(what: &str, id: &str, project: &Project) -> ApiError {
    ApiError::not_found(format!("{what} {id:?} does not exist in project {}", project.0))
}

/// Create a node. Fails with 409 if a node with this id exists (use PATCH, or an upsert in a batch).
#[utoipa::path(post, path = "/nodes", tag = "nodes", params(ProjectParam), request_body = Node,
    responses((status = 201, body = WriteResult), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_node(
    State(state): State<AppState>,
    project: Project,
    Body(node): Body<Node>,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    node.validate()?;
    let id = node.id.clone();
    let outcome = apply_one(&state, &project, Mutation::UpsertNode(node, Expect::Absent)).await?;
    Ok((StatusCode::CREATED, Json(WriteResult { id, outcome })))
}

#[utoipa::path(get, path = "/nodes/{id}", tag = "nodes", params(("id" = String, Path), ProjectParam),
    responses((status = 200, body = Node), (status = 404, body = ErrorBody)))]
pub async fn get_node(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
) -> Result<Json<Node>, ApiError> {
    let names = RedisNames::new(&project.0);
    store::get_node(&mut state.conn(), &names, &id).await?.map(Json).ok_or_else(|| missing("node", &id, &project))
}

/// A partial update: fields present are replaced; `properties` are merged key by key (a `null` removes a key).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub file: Option<String>,
    pub line_start: Option<u32>,
    pub line_end: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
}

pub(crate) fn merge_properties(
    into: &mut BTreeMap<String, serde_json::Value>,
    patch: &Option<BTreeMap<String, serde_json::Value>>,
) {
    for (k, v) in patch.iter().flatten() {
        if v.is_null() {
            into.remove(k);
        } else {
            into.insert(k.clone(), v.clone());
        }
    }
}

#[utoipa::path(patch, path = "/nodes/{id}", tag = "nodes", params(("id" = String, Path), ProjectParam), request_body = NodePatch,
    responses((status = 200, body = WriteResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_node(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
    Body(patch): Body<NodePatch>,
) -> Result<Json<WriteResult>, ApiError> {
    let change = |node: &mut Node| {
        if let Some(kind) = &patch.kind {
            node.kind = kind.clone();
        }
        if let Some(name) = &patch.name {
            node.name = name.clone();
        }
        if patch.file.is_some() {
            node.file = patch.file.clone();
        }
        node.line_start = patch.line_start.or(node.line_start);
        node.line_end = patch.line_end.or(node.line_end);
        merge_properties(&mut node.properties, &patch.properties);
        Ok(node.validate()?)
    };
    let outcome = update_entity(&state, &project, &id, change).await?;
    Ok(Json(WriteResult { id, outcome }))
}

/// An entity that PATCH can change: read with its version, written back as an upsert.
pub(crate) trait Editable: Sized + Send {
    const WHAT: &'static str;
    fn load(
        conn: &mut RedisConn,
        names: &RedisNames,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Self>, RedisError>> + Send;
    fn version(&self) -> u64;
    fn upsert(self, expect: Expect) -> Mutation;
}

impl Editable for Node {
    const WHAT: &'static str = "node";
    fn load(
        conn: &mut RedisConn,
        names: &RedisNames,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Self>, RedisError>> + Send {
        store::get_node(conn, names, id)
    }
    fn version(&self) -> u64 {
        self.version.unwrap_or(0)
    }
    fn upsert(self, expect: Expect) -> Mutation {
        Mutation::UpsertNode(self, expect)
    }
}

/// Read-modify-write with optimistic concurrency: reads the entity and its version, changes it, and writes it
/// only if nobody changed it in between (the Function library checks the version); tries again if someone did.
pub(crate) async fn update_entity<T: Editable>(
    state: &AppState,
    project: &Project,
    id: &str,
    change: impl Fn(&mut T) -> Result<(), ApiError> + Send,
) -> Result<Outcome, ApiError> {
    let names = RedisNames::new(&project.0);
    for attempt in 0..PATCH_ATTEMPTS {
        if attempt > 0 {
            // Full jitter, growing: writers that collided spread out instead of colliding again.
            let cap_us = 1000u128 << attempt.min(6);
            let wait_us = uuid::Uuid::new_v4().as_u128() % cap_us;
            tokio::time::sleep(std::time::Duration::from_micros(wait_us as u64)).await;
        }
        let Some(mut entity) = T::load(&mut state.conn(), &names, id).await? else {
            return Err(missing(T::WHAT, id, project));
        };
        let version = entity.version();
        change(&mut entity)?;
        match apply_one(state, project, entity.upsert(Expect::Version(version))).await {
            Err(e) if e.status == StatusCode::CONFLICT => continue,
            other => return other,
        }
    }
    Err(MutationError::Conflict(format!("{} {id:?} kept changing; try again", T::WHAT)).into())
}

/// Delete a node and every relationship that touches it. `cascaded` counts those relationships. Up to 500 go in
/// the node's own change set (before the node's change); a node with more has them deleted first, in change sets of
/// at most 500 each (every state in between is a valid graph), then goes with what is left.
#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes", params(("id" = String, Path), ProjectParam),
    responses((status = 200, body = WriteResult), (status = 404, body = ErrorBody)))]
pub async fn delete_node(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
) -> Result<Json<WriteResult>, ApiError> {
    let tp = current_traceparent();
    let op = [Mutation::DeleteNode(id.clone(), Expect::Any)];
    let (outcomes, detached) = state.writer(&project.0).mutate_detaching(&mut state.conn(), &op, tp.as_deref()).await?;
    state.metrics.record_outcomes(&outcomes);
    let mut outcome =
        outcomes.into_iter().next().ok_or_else(|| ApiError::internal("the Function library returned no outcome"))?;
    if outcome.status == codegraph_shared::functions::Status::NotFound {
        return Err(missing("node", &id, &project));
    }
    outcome.cascaded += u32::try_from(detached.relationships).unwrap_or(u32::MAX);
    Ok(Json(WriteResult { id, outcome }))
}
