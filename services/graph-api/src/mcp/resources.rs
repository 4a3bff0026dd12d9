//! The resources: `codegraph://<project>/schema` (node kinds, relationship types, the properties seen on each,
//! counts) and `codegraph://<project>/stats` (the REST `GET /stats`), both JSON.

use std::collections::{BTreeMap, BTreeSet};

use codegraph_shared::{
    graph::{Node, Relationship},
    http::ApiError,
    names::{RedisNames, PROJECTS_KEY},
    project::ProjectName,
};
use rmcp::{
    model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate},
    ErrorData,
};
use serde::Serialize;

use super::tools::project_exists;
use crate::{state::AppState, store};

const SCHEME: &str = "codegraph://";
/// Most projects `resources/list` names (two resources each); the templates cover the rest.
const MAX_LISTED_PROJECTS: usize = 100;
/// Most nodes and relationships the schema reads to collect property names: a few ms of Redis time.
const SCHEMA_SAMPLE: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    Schema,
    Stats,
}

/// A parsed resource URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceUri {
    pub project: ProjectName,
    pub kind: ResourceKind,
}

impl ResourceUri {
    /// `codegraph://<project>/schema` or `…/stats`; anything else is `invalid_params` naming the forms.
    pub fn parse(uri: &str) -> Result<Self, ErrorData> {
        let invalid = || {
            ErrorData::invalid_params(
                format!(
                    "unknown resource {uri:?}: expected codegraph://<project>/schema or codegraph://<project>/stats"
                ),
                None,
            )
        };
        let rest = uri.strip_prefix(SCHEME).ok_or_else(invalid)?;
        let (project, kind) = rest.split_once('/').ok_or_else(invalid)?;
        let kind = match kind {
            "schema" => ResourceKind::Schema,
            "stats" => ResourceKind::Stats,
            _ => return Err(invalid()),
        };
        let project =
            ProjectName::parse(project).map_err(|e| ErrorData::invalid_params(ApiError::from(e).message, None))?;
        Ok(Self { project, kind })
    }

    pub fn uri(&self) -> String {
        let kind = match self.kind {
            ResourceKind::Schema => "schema",
            ResourceKind::Stats => "stats",
        };
        format!("{SCHEME}{}/{kind}", self.project)
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

/// As the REST API says it: a Redis error's own text never reaches the client (`ApiError` logs it, with an id).
pub fn api_error(e: ApiError) -> ErrorData {
    ErrorData::internal_error(format!("{}: {}", e.code, e.message), None)
}

/// Two resources per project (the first [`MAX_LISTED_PROJECTS`] by name).
pub async fn list(state: &AppState) -> Result<Vec<Resource>, ApiError> {
    let mut projects: Vec<String> = redis::cmd("SMEMBERS").arg(PROJECTS_KEY).query_async(&mut state.conn()).await?;
    projects.sort();
    let mut resources = Vec::new();
    for project in projects.iter().filter_map(|p| ProjectName::parse(p).ok()).take(MAX_LISTED_PROJECTS) {
        for (kind, what) in [(ResourceKind::Schema, "schema"), (ResourceKind::Stats, "statistics")] {
            let uri = ResourceUri { project: project.clone(), kind }.uri();
            resources.push(
                Resource::new(uri, format!("{project} {what}"))
                    .with_description(format!("The {what} of project {project}'s code graph (JSON)"))
                    .with_mime_type("application/json"),
            );
        }
    }
    Ok(resources)
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new(format!("{SCHEME}{{project}}/schema"), "schema")
            .with_description("Node kinds, relationship types, the properties seen on each, and their counts")
            .with_mime_type("application/json"),
        ResourceTemplate::new(format!("{SCHEME}{{project}}/stats"), "statistics")
            .with_description("Node and relationship counts by kind and type, and the newest event id")
            .with_mime_type("application/json"),
    ]
}

/// The resource's current contents; an unknown project is `resource_not_found`.
pub async fn read(state: &AppState, uri: &ResourceUri) -> Result<ReadResourceResult, ErrorData> {
    if !project_exists(state, &uri.project).await.map_err(api_error)? {
        return Err(ErrorData::resource_not_found(
            format!("no project {:?} (list_projects names them)", uri.project.as_str()),
            None,
        ));
    }
    let names = RedisNames::new(&uri.project);
    let body = match uri.kind {
        ResourceKind::Stats => {
            serde_json::to_string(&store::stats(&mut state.conn(), &names).await.map_err(|e| api_error(e.into()))?)
        }
        ResourceKind::Schema => serde_json::to_string(&schema(state, &names).await.map_err(api_error)?),
    }
    .map_err(internal)?;
    Ok(ReadResourceResult::new(vec![ResourceContents::text(body, uri.uri()).with_mime_type("application/json")]))
}

#[derive(Debug, Serialize)]
pub struct Schema {
    pub project: String,
    /// Node kind → count.
    pub node_kinds: BTreeMap<String, u64>,
    /// Relationship type → count.
    pub relationship_types: BTreeMap<String, u64>,
    /// The fields every node has (`file`, `line_start`, `line_end` optional).
    pub node_fields: [&'static str; 6],
    /// Node kind → names of the properties seen on nodes of that kind (in the sample).
    pub node_properties: BTreeMap<String, BTreeSet<String>>,
    /// Relationship type → names of the properties seen (in the sample).
    pub relationship_properties: BTreeMap<String, BTreeSet<String>>,
    /// How many nodes and relationships the property names were collected from (at most 2,000 of each).
    pub sampled_nodes: usize,
    pub sampled_relationships: usize,
    pub last_event_id: Option<String>,
}

async fn schema(state: &AppState, names: &RedisNames) -> Result<Schema, ApiError> {
    let stats = store::stats(&mut state.conn(), names).await?;
    let mut node_properties: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut relationship_properties: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let nodes = sample(state, &names.nodes()).await?;
    for node in nodes.iter().filter_map(|json| serde_json::from_str::<Node>(json).ok()) {
        node_properties.entry(node.kind).or_default().extend(node.properties.into_keys());
    }
    let rels = sample(state, &names.relationships()).await?;
    for rel in rels.iter().filter_map(|json| serde_json::from_str::<Relationship>(json).ok()) {
        relationship_properties.entry(rel.rel_type).or_default().extend(rel.properties.into_keys());
    }
    Ok(Schema {
        project: names.project().to_string(),
        node_kinds: stats.node_kinds,
        relationship_types: stats.relationship_types,
        node_fields: ["id", "kind", "name", "file", "line_start", "line_end"],
        node_properties,
        relationship_properties,
        sampled_nodes: nodes.len(),
        sampled_relationships: rels.len(),
        last_event_id: stats.last_event_id,
    })
}

/// Up to [`SCHEMA_SAMPLE`] values of a hash, by `HSCAN` in small steps (never one long command).
async fn sample(state: &AppState, key: &str) -> Result<Vec<String>, ApiError> {
    let mut conn = state.conn();
    let mut values = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let (next, pairs): (String, Vec<String>) =
            redis::cmd("HSCAN").arg(key).arg(&cursor).arg("COUNT").arg(500).query_async(&mut conn).await?;
        values.extend(pairs.into_iter().skip(1).step_by(2));
        if next == "0" || values.len() >= SCHEMA_SAMPLE {
            values.truncate(SCHEMA_SAMPLE);
            return Ok(values);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_and_refuse_the_rest() {
        let uri = ResourceUri::parse("codegraph://my.proj/schema").unwrap();
        assert_eq!(uri.kind, ResourceKind::Schema);
        assert_eq!(uri.uri(), "codegraph://my.proj/schema");
        assert_eq!(ResourceUri::parse("codegraph://default/stats").unwrap().kind, ResourceKind::Stats);
        for bad in ["codegraph://default/other", "file:///etc/passwd", "codegraph://a b/stats", "codegraph://x"] {
            assert!(ResourceUri::parse(bad).is_err(), "{bad}");
        }
    }
}
