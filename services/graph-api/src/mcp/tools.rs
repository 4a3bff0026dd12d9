//! The tools: each validates its input (a JSON schema generated from its parameter type; a call that does not
//! fit is a JSON-RPC `invalid_params` error), calls the code the REST routes use, and answers with the result as
//! structured content plus a one-line summary. A failure the caller can act on (unknown project or symbol, bad
//! value, missing scope, Redis unavailable) is a tool result with `isError: true` and
//! `{"error": {"code", "message"}}`, the REST API's codes.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use codegraph_shared::{
    auth::{Denial, Scope},
    graph::Node,
    http::ApiError,
    names::{RedisNames, PROJECTS_KEY},
    project::ProjectName,
};
use rmcp::{
    handler::server::wrapper::Parameters,
    model::{CallToolResult, ContentBlock},
    schemars::{self, JsonSchema},
    service::RequestContext,
    tool, tool_router, RoleServer,
};
use serde::{Deserialize, Serialize};

use super::{
    jobs::{self, Outcome, ProgressSink},
    server::CodeGraphMcp,
};
use crate::{cypher, routes::admin, state::AppState, store};

/// A tool's failure, shown to the caller.
#[derive(Debug)]
pub struct ToolError {
    pub code: String,
    pub message: String,
}

impl ToolError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into() }
    }

    fn into_result(self) -> CallToolResult {
        let text = format!("error {}: {}", self.code, self.message);
        let mut result = CallToolResult::structured_error(
            serde_json::json!({"error": {"code": self.code, "message": self.message}}),
        );
        result.content = vec![ContentBlock::text(text)];
        result
    }
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        Self { code: e.code.to_owned(), message: e.message }
    }
}

impl From<redis::RedisError> for ToolError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<Denial> for ToolError {
    fn from(d: Denial) -> Self {
        let code = match d {
            Denial::MissingToken | Denial::UnknownToken => "unauthorized",
            Denial::MissingScope(_) => "forbidden",
        };
        Self::new(code, d.message())
    }
}

pub(super) type ToolOutcome = Result<CallToolResult, rmcp::ErrorData>;

/// The answer: `value` as structured content, `summary` as the text.
fn answer(value: impl Serialize, summary: String) -> ToolOutcome {
    let value = serde_json::to_value(value).map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))?;
    let mut result = CallToolResult::structured(value);
    result.content = vec![ContentBlock::text(summary)];
    Ok(result)
}

/// A tool body's outcome (its value and summary, or its failure) as the tool's result.
pub(super) fn respond<T: Serialize>(outcome: Result<(T, String), ToolError>) -> ToolOutcome {
    match outcome {
        Ok((value, summary)) => answer(value, summary),
        Err(e) => Ok(e.into_result()),
    }
}

/// Whether the project has ever had a mutation or job (`code_graph:projects`).
pub async fn project_exists(state: &AppState, project: &ProjectName) -> Result<bool, ApiError> {
    Ok(redis::cmd("SISMEMBER").arg(PROJECTS_KEY).arg(project.as_str()).query_async(&mut state.conn()).await?)
}

/// The project a tool names (default `default`), which must exist.
pub async fn known_project(state: &AppState, name: Option<&str>) -> Result<ProjectName, ToolError> {
    let project = parse_project(name)?;
    if !project_exists(state, &project).await? {
        return Err(ToolError::new(
            "unknown_project",
            format!("no project {:?}: list_projects names the projects that exist", project.as_str()),
        ));
    }
    Ok(project)
}

fn parse_project(name: Option<&str>) -> Result<ProjectName, ToolError> {
    match name {
        None => Ok(ProjectName::default_project()),
        Some(name) => Ok(ProjectName::parse(name).map_err(ApiError::from)?),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectArgs {
    /// Project name, `^[A-Za-z0-9._-]{1,64}$` (default `default`).
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProjectsArgs {
    /// Accepted like every tool's, and ignored: every project is listed.
    #[allow(dead_code)]
    pub project: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// Text to find in symbol names or ids, case-insensitive: exact matches first, then prefixes, then substrings.
    pub query: String,
    /// Only symbols of this kind (e.g. `function`, `class`, `method`, `file`).
    pub kind: Option<String>,
    /// Most results, 1 to 100 (default 20).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReanalyzeArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// Directory to analyse, absolute, on the analysis-worker's file system (under its allowed roots).
    pub path: String,
    /// `incremental` (default: only files whose content changed) or `full`.
    pub mode: Option<AnalysisMode>,
}

/// `POST /admin/reanalyze`'s `mode`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnalysisMode {
    /// Parse everything again and rewrite the difference.
    Full,
    /// Parse only files whose content changed.
    Incremental,
}

impl From<AnalysisMode> for admin::Mode {
    fn from(mode: AnalysisMode) -> Self {
        match mode {
            AnalysisMode::Full => admin::Mode::Full,
            AnalysisMode::Incremental => admin::Mode::Incremental,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CypherArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// One read-only Cypher statement (a statement that writes is refused). Nodes carry the node kind as label
    /// and `id`, `name`, `file`, `line_start`, `line_end` and their properties; relationships carry their type.
    /// Parameters are written `$name`.
    pub query: String,
    /// Values of the statement's `$name` parameters.
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// A stream ID (e.g. the `event_id` a mutation answered): wait, bounded, until the graph database has applied it.
    pub min_id: Option<String>,
    /// Most rows (default and maximum: the server's `falkordb.max_rows`).
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
    /// Longest run time in milliseconds (default and maximum: the server's `falkordb.query_timeout_ms`).
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    /// Project name (default `default`); the job must belong to it.
    pub project: Option<String>,
    /// The job id `reanalyze` (or `POST /admin/reanalyze`) gave.
    pub job_id: String,
}

#[derive(Serialize)]
struct Projects {
    projects: Vec<String>,
}

#[derive(Serialize)]
struct Found {
    project: String,
    nodes: Vec<Node>,
    truncated: bool,
}

pub(super) fn list_names(names: &[String], most: usize) -> String {
    let mut text = names.iter().take(most).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > most {
        text.push_str(", …");
    }
    text
}

#[tool_router(router = tool_router, vis = "pub(super)")]
impl CodeGraphMcp {
    #[tool(
        description = "List the projects (analysed repositories) that have a code graph.",
        annotations(title = "List projects", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_projects(&self, Parameters(_): Parameters<ListProjectsArgs>) -> ToolOutcome {
        let outcome = async {
            let mut projects: Vec<String> =
                redis::cmd("SMEMBERS").arg(PROJECTS_KEY).query_async(&mut self.state.conn()).await?;
            projects.sort();
            let summary = format!("{} project(s): {}", projects.len(), list_names(&projects, 20));
            Ok::<_, ToolError>((Projects { projects }, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "Find symbols (files, classes, functions, methods, ...) by name or id, case-insensitive: exact \
                       matches first, then prefixes, then substrings. Gives node ids for the other tools.",
        annotations(title = "Search symbols", read_only_hint = true, open_world_hint = false)
    )]
    async fn search_symbols(&self, Parameters(args): Parameters<SearchArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            if args.query.is_empty() || args.query.len() > 256 {
                return Err(ToolError::new("invalid_query", "query must be 1 to 256 bytes"));
            }
            let limit = args.limit.unwrap_or(20).clamp(1, 100) as usize;
            let names = RedisNames::new(&project);
            let scan_limit = self.state.settings.api.search_scan_limit;
            let (nodes, truncated) =
                store::search(&mut self.state.conn(), &names, &args.query, args.kind.as_deref(), limit, scan_limit)
                    .await?;
            let shown: Vec<String> = nodes.iter().map(|n| format!("{} {}", n.kind, n.id)).collect();
            let summary = format!(
                "{} symbol(s) for {:?}{}: {}",
                nodes.len(),
                args.query,
                if truncated { " (search stopped early)" } else { "" },
                list_names(&shown, 5)
            );
            Ok((Found { project: project.to_string(), nodes, truncated }, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "Counts of the project's graph: nodes and relationships, by node kind and relationship type, \
                       and the newest event id.",
        annotations(title = "Project statistics", read_only_hint = true, open_world_hint = false)
    )]
    async fn project_statistics(&self, Parameters(args): Parameters<ProjectArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            let stats = store::stats(&mut self.state.conn(), &RedisNames::new(&project)).await?;
            let summary = format!(
                "project {project}: {} nodes, {} relationships, {} kinds, {} relationship types",
                stats.nodes,
                stats.relationships,
                stats.node_kinds.len(),
                stats.relationship_types.len()
            );
            Ok((stats, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "Analyse a directory again and update the project's graph (only the difference is written). \
                       Sends progress notifications when the request has a progress token, answers with the job \
                       once it ended; cancelling the request stops the job within a second. Needs the `write` \
                       scope.",
        annotations(
            title = "Reanalyze a folder",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn reanalyze(
        &self,
        Parameters(args): Parameters<ReanalyzeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolOutcome {
        let outcome = async {
            self.require(Scope::Write, &ctx)?;
            let project = parse_project(args.project.as_deref())?;
            let progress = ctx.meta.get_progress_token().map(|token| ProgressSink { peer: ctx.peer.clone(), token });
            let ended = jobs::run(
                &self.state,
                &project,
                args.path,
                args.mode.map(admin::Mode::from).unwrap_or_default(),
                progress,
                ctx.ct.clone(),
            )
            .await?;
            match ended {
                Outcome::Finished(job) if job.status == "completed" => {
                    let summary = format!("job {} completed in project {project}", job.job_id);
                    Ok((job, summary))
                }
                Outcome::Finished(job) => Err(ToolError::new(
                    "job_not_completed",
                    format!(
                        "job {} ended {}: {}",
                        job.job_id,
                        job.status,
                        job.last_event.as_ref().map(|e| e.to_string()).unwrap_or_default()
                    ),
                )),
                Outcome::Cancelled(job) => Err(ToolError::new(
                    "cancelled",
                    format!("job {} was cancelled with the request (status {})", job.job_id, job.status),
                )),
            }
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "Run one read-only Cypher statement on the project's graph database (FalkorDB, kept equal to \
                       the live graph by the CDC pipeline), with a timeout and a row cap. The answer says how fresh \
                       it is: the stream ID the database had applied and the project's last one; `min_id` waits \
                       for a given change first.",
        annotations(title = "Read-only Cypher", read_only_hint = true, open_world_hint = false)
    )]
    async fn cypher_query(&self, Parameters(args): Parameters<CypherArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            let request = cypher::CypherRequest {
                statement: args.query,
                params: args.params.unwrap_or_default(),
                min_id: args.min_id,
                limit: args.limit,
                timeout_ms: args.timeout_ms,
            };
            let answer = cypher::run(&self.state, &project, request).await?;
            let summary = format!(
                "{} row(s){} of {} column(s); graph database at {}, project at {}",
                answer.rows.len(),
                if answer.truncated { " (truncated)" } else { "" },
                answer.columns.len(),
                answer.applied_id.map(|id| id.to_string()).unwrap_or_else(|| "nothing applied".into()),
                answer.last_id
            );
            Ok((answer, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "The state of an analysis job: status, mode, path, times, and its latest progress or result.",
        annotations(title = "Analysis job status", read_only_hint = true, open_world_hint = false)
    )]
    async fn job_status(&self, Parameters(args): Parameters<JobArgs>) -> ToolOutcome {
        let outcome = async {
            let project = parse_project(args.project.as_deref())?;
            let Json(job) = admin::get_job(State(self.state.clone()), Path(args.job_id.clone())).await?;
            if job.project != project.as_str() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no job {:?} in project {project}", args.job_id),
                )
                .into());
            }
            let summary = format!("job {} in project {project}: {}", job.job_id, job.status);
            Ok((job, summary))
        }
        .await;
        respond(outcome)
    }
}
