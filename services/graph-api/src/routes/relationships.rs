//! `/api/graph/relationships`: create, read, patch and delete one relationship.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use codegraph_shared::redis_handle::RedisConn;
use codegraph_shared::{
    functions::{Expect, Mutation, Status},
    graph::{check_label, Relationship},
    http::ApiError,
    names::RedisNames,
};
use redis::RedisError;
use serde::Deserialize;

use super::nodes::{apply_one, merge_properties, missing, update_entity, Editable, WriteResult};
use crate::{
    extract::{Body, Project, ProjectParam},
    routes::ErrorBody,
    state::AppState,
    store,
};

/// A relationship to write. Without an `id`, it gets `<source>|<type>|<target>`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationshipInput {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub rel_type: String,
    pub source: String,
    pub target: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

impl RelationshipInput {
    pub fn into_relationship(self) -> Result<Relationship, ApiError> {
        let id = self.id.unwrap_or_else(|| Relationship::derived_id(&self.source, &self.rel_type, &self.target));
        let r = Relationship {
            id,
            rel_type: self.rel_type,
            source: self.source,
            target: self.target,
            properties: self.properties,
            version: None,
        };
        r.validate()?;
        Ok(r)
    }
}

/// Create a relationship between two existing nodes (422 `dangling_relationship` otherwise; 409 if it exists).
#[utoipa::path(post, path = "/relationships", tag = "relationships", params(ProjectParam), request_body = RelationshipInput,
    responses((status = 201, body = WriteResult), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_relationship(
    State(state): State<AppState>,
    project: Project,
    Body(input): Body<RelationshipInput>,
) -> Result<(StatusCode, Json<WriteResult>), ApiError> {
    let rel = input.into_relationship()?;
    let id = rel.id.clone();
    let outcome = apply_one(&state, &project, Mutation::UpsertRelationship(rel, Expect::Absent)).await?;
    Ok((StatusCode::CREATED, Json(WriteResult { id, outcome })))
}

#[utoipa::path(get, path = "/relationships/{id}", tag = "relationships", params(("id" = String, Path), ProjectParam),
    responses((status = 200, body = Relationship), (status = 404, body = ErrorBody)))]
pub async fn get_relationship(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
) -> Result<Json<Relationship>, ApiError> {
    let names = RedisNames::new(&project.0);
    store::get_relationship(&mut state.conn(), &names, &id)
        .await?
        .map(Json)
        .ok_or_else(|| missing("relationship", &id, &project))
}

/// A partial update of a relationship: its type and properties (merged; `null` removes a key). Its ends are
/// fixed: delete it and create another to move it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationshipPatch {
    #[serde(rename = "type")]
    pub rel_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<BTreeMap<String, serde_json::Value>>,
}

#[utoipa::path(patch, path = "/relationships/{id}", tag = "relationships", params(("id" = String, Path), ProjectParam),
    request_body = RelationshipPatch,
    responses((status = 200, body = WriteResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_relationship(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
    Body(patch): Body<RelationshipPatch>,
) -> Result<Json<WriteResult>, ApiError> {
    if let Some(t) = &patch.rel_type {
        check_label("type", t)?;
    }
    let change = |rel: &mut Relationship| {
        if let Some(t) = &patch.rel_type {
            rel.rel_type = t.clone();
        }
        merge_properties(&mut rel.properties, &patch.properties);
        Ok(rel.validate()?)
    };
    let outcome = update_entity(&state, &project, &id, change).await?;
    Ok(Json(WriteResult { id, outcome }))
}

impl Editable for Relationship {
    const WHAT: &'static str = "relationship";
    fn load(
        conn: &mut RedisConn,
        names: &RedisNames,
        id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Self>, RedisError>> + Send {
        store::get_relationship(conn, names, id)
    }
    fn version(&self) -> u64 {
        self.version.unwrap_or(0)
    }
    fn upsert(self, expect: Expect) -> Mutation {
        Mutation::UpsertRelationship(self, expect)
    }
}

#[utoipa::path(delete, path = "/relationships/{id}", tag = "relationships", params(("id" = String, Path), ProjectParam),
    responses((status = 200, body = WriteResult), (status = 404, body = ErrorBody)))]
pub async fn delete_relationship(
    State(state): State<AppState>,
    project: Project,
    Path(id): Path<String>,
) -> Result<Json<WriteResult>, ApiError> {
    let outcome = apply_one(&state, &project, Mutation::DeleteRelationship(id.clone(), Expect::Any)).await?;
    if outcome.status == Status::NotFound {
        return Err(missing("relationship", &id, &project));
    }
    Ok(Json(WriteResult { id, outcome }))
}
