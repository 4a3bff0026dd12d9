//! The code-intelligence tools: `get_symbol_context`, `find_callers`, `find_callees`, `impact_analysis`,
//! `find_path`, `file_dependencies`. Each resolves its symbol as the REST routes do (a node id, else the first
//! node `search_symbols` finds, with the other matches named in `resolution`) and calls the same walk
//! (`crate::intel`), with the same bounds and the same error codes.

use codegraph_shared::names::RedisNames;
use rmcp::{
    handler::server::wrapper::Parameters,
    schemars::{self, JsonSchema},
    tool, tool_router,
};
use serde::Deserialize;

use super::{
    server::CodeGraphMcp,
    tools::{known_project, list_names, respond, ToolError, ToolOutcome},
};
use crate::{
    intel::{
        self,
        calls::{CallDirection, CallQuery},
        Bounds, SymbolRef,
    },
    state::AppState,
};

fn bounds(state: &AppState) -> Bounds {
    let api = &state.settings.api;
    Bounds { relationships: api.neighbors_max_relationships, scan: api.search_scan_limit, max_limit: api.max_page_size }
}

fn shown(symbol: &SymbolRef) -> String {
    format!("{} {}", symbol.kind, symbol.id)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// A node id, or a name (the first `search_symbols` hit is used; the others are named in `resolution`).
    pub symbol: String,
    /// Include the source text of the symbol's lines when graph-api can read the analysed folder (default true).
    pub source: Option<bool>,
    /// Most members listed (default 200).
    #[schemars(range(min = 1))]
    pub members_limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallersArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// A node id, or a name (the first `search_symbols` hit is used).
    pub symbol: String,
    /// Calls deep, 1 to 5 (default 1: direct callers).
    #[schemars(range(min = 1, max = 5))]
    pub depth: Option<u32>,
    /// Only calls the analysis resolved with at least this confidence, 0 to 1 (default 0).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: Option<f64>,
    /// Most results (default 500).
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
    /// Also list possible callers: call sites the analysis could not resolve whose last name is the symbol's
    /// (scans the project's nodes, bounded; default false).
    pub unresolved: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalleesArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// A node id, or a name (the first `search_symbols` hit is used).
    pub symbol: String,
    /// Calls deep, 1 to 5 (default 1: direct callees).
    #[schemars(range(min = 1, max = 5))]
    pub depth: Option<u32>,
    /// Only calls the analysis resolved with at least this confidence, 0 to 1 (default 0).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: Option<f64>,
    /// Most results (default 500).
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpactArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// A node id, or a name (the first `search_symbols` hit is used).
    pub symbol: String,
    /// Dependency steps, 1 to 10 (default 3).
    #[schemars(range(min = 1, max = 10))]
    pub depth: Option<u32>,
    /// Most dependents (default 1000).
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// Where the path starts: a node id or a name.
    pub from: String,
    /// Where it ends: a node id or a name.
    pub to: String,
    /// Relationship types to follow (default `calls`, `imports`, `inherits`, `implements`; `contains` and
    /// `defines` allowed).
    pub types: Option<Vec<String>>,
    /// Longest path, 1 to 10 relationships (default 6).
    #[schemars(range(min = 1, max = 10))]
    pub max_depth: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DependenciesArgs {
    /// Project name (default `default`).
    pub project: Option<String>,
    /// The file or module: a node id, a path such as `src/app.py`, or a name.
    pub file: String,
    /// Most entries per direction (default 500).
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
}

fn confidence(value: Option<f64>) -> Result<f64, ToolError> {
    match value {
        None => Ok(0.0),
        Some(c) if (0.0..=1.0).contains(&c) => Ok(c),
        Some(c) => Err(ToolError::new("invalid_query", format!("min_confidence must be 0 to 1, not {c}"))),
    }
}

#[tool_router(router = intel_router, vis = "pub(super)")]
impl CodeGraphMcp {
    #[tool(
        description = "A symbol with its surroundings: the node (kind, file, lines, properties), its containers \
                       (class, file, directories), its members, and the source text of its lines when the analysed \
                       folder is readable.",
        annotations(title = "Symbol context", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_symbol_context(&self, Parameters(args): Parameters<ContextArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            let (names, bounds) = (RedisNames::new(&project), bounds(&self.state));
            let mut conn = self.state.conn();
            let symbol = intel::resolve(&mut conn, &names, &args.symbol, false, bounds.scan).await?;
            let members_limit = intel::clamp_limit(args.members_limit, 200, bounds.max_limit);
            let context =
                intel::context::context(&mut conn, &names, symbol, args.source.unwrap_or(true), members_limit, bounds)
                    .await?;
            let place = match (&context.path, context.line_start, context.line_end) {
                (Some(path), Some(a), Some(b)) => format!(" at {path}:{a}-{b}"),
                (Some(path), _, _) => format!(" in {path}"),
                _ => String::new(),
            };
            let source = match (&context.source, &context.source_unavailable) {
                (Some(s), _) => format!("source: {} line(s)", s.line_end.saturating_sub(s.line_start) + 1),
                (None, Some(reason)) => format!("no source: {reason}"),
                (None, None) => "no source".to_owned(),
            };
            let summary = format!(
                "{} {}{place}; {} container(s), {} member(s); {source}",
                context.symbol.kind,
                context.symbol.id,
                context.containers.len(),
                context.members.len()
            );
            Ok((context, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "Who calls a symbol, breadth first up to `depth` calls away, each caller once at its nearest \
                       depth, with the confidence of each resolved call. With `unresolved`, call sites the analysis \
                       could not resolve that may be calls of it are listed apart.",
        annotations(title = "Find callers", read_only_hint = true, open_world_hint = false)
    )]
    async fn find_callers(&self, Parameters(args): Parameters<CallersArgs>) -> ToolOutcome {
        let query = |depth, min_confidence, limit| CallQuery {
            direction: CallDirection::Callers,
            depth,
            min_confidence,
            limit,
            unresolved: args.unresolved.unwrap_or(false),
        };
        respond(
            self.call_walk(args.project.as_deref(), &args.symbol, args.depth, args.min_confidence, args.limit, query)
                .await,
        )
    }

    #[tool(
        description = "What a symbol calls, breadth first up to `depth` calls away, with the confidence of each \
                       resolved call; the call sites the analysis could not resolve are listed apart (`unresolved`).",
        annotations(title = "Find callees", read_only_hint = true, open_world_hint = false)
    )]
    async fn find_callees(&self, Parameters(args): Parameters<CalleesArgs>) -> ToolOutcome {
        let query = |depth, min_confidence, limit| CallQuery {
            direction: CallDirection::Callees,
            depth,
            min_confidence,
            limit,
            unresolved: false,
        };
        respond(
            self.call_walk(args.project.as_deref(), &args.symbol, args.depth, args.min_confidence, args.limit, query)
                .await,
        )
    }

    #[tool(
        description = "Everything that depends on a symbol (through calls, imports, inherits, implements, also of \
                       its members), grouped by depth, capped, with counts by depth, kind and relationship type, \
                       and the files involved: what may break if it changes.",
        annotations(title = "Impact analysis", read_only_hint = true, open_world_hint = false)
    )]
    async fn impact_analysis(&self, Parameters(args): Parameters<ImpactArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            let (names, bounds) = (RedisNames::new(&project), bounds(&self.state));
            let depth = intel::check_range("depth", args.depth.unwrap_or(3), 1..=10)?;
            let limit = intel::clamp_limit(args.limit, 1000, bounds.max_limit);
            let mut conn = self.state.conn();
            let symbol = intel::resolve(&mut conn, &names, &args.symbol, false, bounds.scan).await?;
            let impact = intel::impact::impact(&mut conn, &names, symbol, depth, limit, bounds).await?;
            let summary = format!(
                "{} dependent(s) of {} within {depth} step(s), in {} file(s){}",
                impact.counts.total,
                shown(&impact.symbol),
                impact.files.len(),
                if impact.truncated { " (truncated)" } else { "" }
            );
            Ok((impact, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "The shortest directed dependency path from one symbol to another (calls, imports, inherits, \
                       implements by default), or the error `no_path`.",
        annotations(title = "Dependency path", read_only_hint = true, open_world_hint = false)
    )]
    async fn find_path(&self, Parameters(args): Parameters<PathArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            let (names, bounds) = (RedisNames::new(&project), bounds(&self.state));
            let max_depth = intel::check_range("max_depth", args.max_depth.unwrap_or(6), 1..=10)?;
            let types = intel::path::parse_types(args.types.map(|t| t.join(",")).as_deref())?;
            let mut conn = self.state.conn();
            let from = intel::resolve(&mut conn, &names, &args.from, false, bounds.scan).await?;
            let to = intel::resolve(&mut conn, &names, &args.to, false, bounds.scan).await?;
            let path = intel::path::shortest_path(&mut conn, &names, from, to, types, max_depth, bounds).await?;
            let steps: Vec<String> = path.nodes.iter().map(|n| n.name.clone()).collect();
            let summary = format!("path of length {}: {}", path.length, steps.join(" -> "));
            Ok((path, summary))
        }
        .await;
        respond(outcome)
    }

    #[tool(
        description = "A file's or module's imports in both directions: what it imports, what imports it (or one \
                       of its members), and the imports outside the project.",
        annotations(title = "File dependencies", read_only_hint = true, open_world_hint = false)
    )]
    async fn file_dependencies(&self, Parameters(args): Parameters<DependenciesArgs>) -> ToolOutcome {
        let outcome = async {
            let project = known_project(&self.state, args.project.as_deref()).await?;
            let (names, bounds) = (RedisNames::new(&project), bounds(&self.state));
            let limit = intel::clamp_limit(args.limit, 500, bounds.max_limit);
            let mut conn = self.state.conn();
            let target = intel::resolve(&mut conn, &names, &args.file, true, bounds.scan).await?;
            let deps = intel::deps::dependencies(&mut conn, &names, target, limit, bounds).await?;
            let summary = format!(
                "{} imports {} and is imported by {}; external: {}",
                shown(&deps.target),
                deps.counts.imports,
                deps.counts.imported_by,
                if deps.external_imports.is_empty() {
                    "none".to_owned()
                } else {
                    list_names(&deps.external_imports, 8)
                }
            );
            Ok((deps, summary))
        }
        .await;
        respond(outcome)
    }
}

impl CodeGraphMcp {
    /// `find_callers` and `find_callees`: the shared validation, resolution and summary.
    async fn call_walk(
        &self,
        project: Option<&str>,
        symbol: &str,
        depth: Option<u32>,
        min_confidence: Option<f64>,
        limit: Option<usize>,
        query: impl FnOnce(u32, f64, usize) -> CallQuery,
    ) -> Result<(intel::calls::CallGraph, String), ToolError> {
        let project = known_project(&self.state, project).await?;
        let (names, bounds) = (RedisNames::new(&project), bounds(&self.state));
        let depth = intel::check_range("depth", depth.unwrap_or(1), 1..=5)?;
        let query = query(depth, confidence(min_confidence)?, intel::clamp_limit(limit, 500, bounds.max_limit));
        let mut conn = self.state.conn();
        let symbol = intel::resolve(&mut conn, &names, symbol, false, bounds.scan).await?;
        let graph = intel::calls::calls(&mut conn, &names, symbol, query, bounds).await?;
        let what = match graph.direction {
            CallDirection::Callers => "caller",
            CallDirection::Callees => "callee",
        };
        let found: Vec<String> = graph.results.iter().map(|e| e.node.name.clone()).collect();
        let unresolved = match (graph.unresolved_searched, graph.unresolved.len()) {
            (false, _) => String::new(),
            (true, n) => format!("; {n} unresolved call site(s)"),
        };
        let summary = format!(
            "{} {what}(s) of {} within depth {depth}{unresolved}{}: {}",
            graph.results.len(),
            shown(&graph.symbol),
            if graph.truncated { " (truncated)" } else { "" },
            list_names(&found, 10)
        );
        Ok((graph, summary))
    }
}
