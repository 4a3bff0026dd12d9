//! `/api/graph/admin/watch`: keep a project's graph current with a folder (start, stop, status).
//!
//! graph-api only records the wish, in Redis (`code_graph:{p}:watch`, indexed in `code_graph:watches`), so it
//! survives restarts of every service; the analysis-workers share the watches out, one lease per project, and the
//! holder reports in `code_graph:{p}:watch:status` (services/analysis-worker/src/watches.rs). A request is checked
//! against the roots the live workers announce (`code_graph:watch:roots`) and, when this process sees the same
//! file system (one of those roots exists here), against the folder itself, so a bad path is refused at once and
//! changes nothing.

use std::path::{Path, PathBuf};

use axum::{extract::State, http::StatusCode, Json};
use codegraph_shared::{
    http::ApiError,
    names::{RedisNames, WATCHES_KEY, WATCH_ROOTS_KEY, WATCH_WORKERS_KEY},
    stream::now_ms,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::{
    extract::{Body, Project, ProjectParam},
    routes::{admin::MAX_PATH_LEN, ErrorBody},
    state::AppState,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    /// Absolute folder on the workers' file system, under their allowed roots.
    pub path: String,
}

/// The worker that holds a watch's lease.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WatchHolder {
    /// The analysis-worker's consumer name (its `/status` says `consumer`).
    pub worker: String,
    /// Grows at every take-over.
    pub generation: u64,
    /// When it took the watch (ms since the epoch).
    pub since_ms: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WatchStatus {
    pub project: String,
    /// Whether a watch is requested for the project.
    pub watching: bool,
    pub path: Option<String>,
    /// When the watch was requested (ms since the epoch).
    pub requested_ms: Option<u64>,
    /// `off`, `waiting` (no worker holds it yet), `catching_up` (applying what changed while nobody watched),
    /// `watching` (following file notifications) or `failed` (see `error`; retried).
    pub state: String,
    pub holder: Option<WatchHolder>,
    /// When the last run that changed files ended (ms since the epoch).
    pub last_change_ms: Option<u64>,
    /// Files of that change (at most 20).
    pub last_change_files: Vec<String>,
    /// Changed paths noticed and waiting for the next run.
    pub pending_changes: u64,
    /// The last run: `job_id`, `outcome` (completed, failed, cancelled), `changed_files`, `duration_ms`,
    /// `finished_ms`, `error`.
    #[schema(value_type = Option<Object>)]
    pub last_run: Option<serde_json::Value>,
    /// Why the holder cannot watch, when it cannot.
    pub error: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_path", message)
}

/// `path` with `.` and `..` resolved by name, or `None` when it is not absolute.
fn lexical(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    path.is_absolute().then(|| codegraph_shared::paths::lexically_normal(path))
}

/// The roots the live analysis-workers may analyse; 409 `no_worker` when no worker is alive (a state of the
/// deployment the client can wait out, not an outage of this service: Redis answered).
async fn live_roots(state: &AppState) -> Result<Vec<PathBuf>, ApiError> {
    let mut conn = state.conn();
    let workers: Vec<String> =
        redis::cmd("ZRANGEBYSCORE").arg(WATCH_WORKERS_KEY).arg(now_ms()).arg("+inf").query_async(&mut conn).await?;
    if workers.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_worker",
            "no analysis-worker is running: start one, then ask again (nothing was changed)",
        ));
    }
    let lists: Vec<Option<String>> =
        redis::cmd("HMGET").arg(WATCH_ROOTS_KEY).arg(&workers).query_async(&mut conn).await?;
    let mut roots: Vec<PathBuf> = Vec::new();
    for list in lists.into_iter().flatten() {
        for root in serde_json::from_str::<Vec<String>>(&list).unwrap_or_default() {
            let root = PathBuf::from(root);
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    }
    Ok(roots)
}

/// The folder to record, as written with `.` and `..` resolved, or why it is refused.
async fn check_path(state: &AppState, path: &str) -> Result<PathBuf, ApiError> {
    if path.is_empty() || path.len() > MAX_PATH_LEN || path.chars().any(char::is_control) {
        return Err(invalid(format!("path must be 1 to {MAX_PATH_LEN} bytes without control characters")));
    }
    let written = lexical(path).ok_or_else(|| invalid("path must be absolute"))?;
    let roots = live_roots(state).await?;
    let outside = || {
        let shown = roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
        let shown = if shown.is_empty() { "none configured".to_owned() } else { shown };
        invalid(format!(
            "path {path} is outside the allowed roots ({shown}); set CODEGRAPH__ANALYSIS__ALLOWED_ROOTS to allow it"
        ))
    };
    if !roots.iter().any(|r| written.starts_with(r)) {
        return Err(outside());
    }
    // The folder itself, when this process sees the workers' file system; otherwise the holder reports a
    // missing folder in the watch's `error`.
    let mut shared = false;
    for root in &roots {
        shared |= tokio::fs::metadata(root).await.is_ok_and(|m| m.is_dir());
    }
    if shared {
        let canonical = tokio::fs::canonicalize(&written)
            .await
            .map_err(|e| invalid(format!("path {path} does not exist or is not readable: {e}")))?;
        if !roots.iter().any(|r| canonical.starts_with(r)) {
            return Err(outside());
        }
        if !tokio::fs::metadata(&canonical).await.is_ok_and(|m| m.is_dir()) {
            return Err(invalid(format!("path {path} is not a directory")));
        }
    }
    Ok(written)
}

/// The watch, its holder's report, the lease's owner and its generation, as Redis holds them.
type Stored = (HashMap<String, String>, HashMap<String, String>, Option<String>, Option<u64>);

/// What Redis says of the project's watch.
async fn load(state: &AppState, names: &RedisNames) -> Result<WatchStatus, ApiError> {
    // Four keys of one project: one slot, so one pipeline even on a Redis Cluster.
    let (watch, status, owner, generation): Stored = redis::pipe()
        .cmd("HGETALL")
        .arg(names.watch())
        .cmd("HGETALL")
        .arg(names.watch_status())
        .cmd("GET")
        .arg(names.watch_owner())
        .cmd("GET")
        .arg(names.watch_owner_generation())
        .query_async(&mut state.conn())
        .await?;
    Ok(view(names, watch, status, owner, generation))
}

fn view(
    names: &RedisNames,
    mut watch: HashMap<String, String>,
    mut status: HashMap<String, String>,
    owner: Option<String>,
    generation: Option<u64>,
) -> WatchStatus {
    let number = |m: &HashMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    let path = watch.remove("path");
    let watching = path.is_some();
    // The report is the holder's only when it is of the lease's generation and of the folder now watched.
    let reported = watching
        && owner.is_some()
        && number(&status, "generation") == generation
        && status.get("worker") == owner.as_ref()
        && status.get("path") == path.as_ref();
    let state = match (watching, owner.is_some(), reported) {
        (false, _, _) => "off".to_owned(),
        (true, true, true) => status.get("state").cloned().unwrap_or_else(|| "catching_up".into()),
        (true, _, _) => "waiting".to_owned(),
    };
    let holder = owner.filter(|_| watching).map(|worker| WatchHolder {
        worker,
        generation: generation.unwrap_or(0),
        since_ms: if reported { number(&status, "since_ms") } else { None },
    });
    WatchStatus {
        project: names.project().to_string(),
        watching,
        requested_ms: number(&watch, "requested_ms"),
        path,
        state,
        holder,
        last_change_ms: number(&status, "last_change_ms"),
        last_change_files: status
            .get("last_change_files")
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default(),
        pending_changes: if reported { number(&status, "pending").unwrap_or(0) } else { 0 },
        last_run: status.get("last_run").and_then(|v| serde_json::from_str(v).ok()),
        error: if reported { status.remove("error").filter(|e| !e.is_empty()) } else { None },
    }
}

/// Watch a folder: an analysis-worker takes the watch within about a second, first applies what changed since the
/// project's last analysis (content hashes), then every saved change as it happens. Asking again with another
/// folder moves the watch. The watch lasts until `DELETE`, across restarts of every service.
#[utoipa::path(post, path = "/admin/watch", tag = "admin", params(ProjectParam), request_body = WatchRequest,
    responses((status = 200, body = WatchStatus),
        (status = 422, description = "The path is not absolute, not under the workers' allowed roots, missing or not a folder (`invalid_path`); nothing changed.", body = ErrorBody),
        (status = 409, description = "No analysis-worker is running (`no_worker`); nothing changed.", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    project: Project,
    Body(req): Body<WatchRequest>,
) -> Result<Json<WatchStatus>, ApiError> {
    let path = check_path(&state, &req.path).await?;
    let path = path.display().to_string();
    let names = RedisNames::new(&project.0);
    let mut conn = state.conn();
    // The watch first, then the index: a worker that finds the project in the index always finds its watch.
    // Two commands: on a Redis Cluster the index lives in another slot.
    redis::cmd("HSET")
        .arg(names.watch())
        .arg("path")
        .arg(&path)
        .arg("requested_ms")
        .arg(now_ms())
        .query_async::<()>(&mut conn)
        .await?;
    redis::cmd("SADD").arg(WATCHES_KEY).arg(project.0.as_str()).query_async::<()>(&mut conn).await?;
    tracing::info!(project = %project.0, path, "watch requested");
    Ok(Json(load(&state, &names).await?))
}

/// Stop watching; the graph stays as it is. The worker stops within about a second.
#[utoipa::path(delete, path = "/admin/watch", tag = "admin", params(ProjectParam),
    responses((status = 200, body = WatchStatus), (status = 404, description = "The project is not watched (`not_watched`).", body = ErrorBody)))]
pub async fn stop(State(state): State<AppState>, project: Project) -> Result<Json<WatchStatus>, ApiError> {
    let names = RedisNames::new(&project.0);
    let mut conn = state.conn();
    let exists: bool = redis::cmd("EXISTS").arg(names.watch()).query_async(&mut conn).await?;
    if !exists {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_watched",
            format!("project {} is not watched", project.0),
        ));
    }
    // The index first, then the watch: the reverse of `start`.
    redis::cmd("SREM").arg(WATCHES_KEY).arg(project.0.as_str()).query_async::<()>(&mut conn).await?;
    redis::cmd("DEL").arg(names.watch()).arg(names.watch_status()).query_async::<()>(&mut conn).await?;
    tracing::info!(project = %project.0, "watch stopped");
    Ok(Json(load(&state, &names).await?))
}

/// Whether the project is watched, by which worker, in which state, and its last change.
#[utoipa::path(get, path = "/admin/watch", tag = "admin", params(ProjectParam), responses((status = 200, body = WatchStatus)))]
pub async fn status(State(state): State<AppState>, project: Project) -> Result<Json<WatchStatus>, ApiError> {
    Ok(Json(load(&state, &RedisNames::new(&project.0)).await?))
}

#[cfg(test)]
mod tests {
    use super::lexical;
    use std::path::PathBuf;

    #[test]
    fn paths_are_resolved_by_name_and_must_be_absolute() {
        assert_eq!(lexical("/srv/repo/../other/./x"), Some(PathBuf::from("/srv/other/x")));
        assert_eq!(lexical("/srv/../.."), Some(PathBuf::from("/")));
        assert_eq!(lexical("srv/repo"), None);
    }
}
