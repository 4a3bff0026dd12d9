//! `/api/graph/admin`: analysis jobs (enqueue, look up, cancel) and resetting a project's graph.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    Json,
};
use codegraph_shared::{
    functions,
    http::ApiError,
    names::{RedisNames, JOBS_CANCEL_CHANNEL, JOBS_STREAM, JOB_PROJECTS_KEY, PROJECTS_KEY},
    project::ProjectName,
    telemetry::current_traceparent,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    extract::{Body, Params, Project, ProjectParam},
    routes::ErrorBody,
    state::AppState,
};

/// Jobs kept on the job stream (approximate); older entries are trimmed.
const JOBS_STREAM_MAX_LEN: u64 = 10_000;
/// Longest path a job (or a watch) may name, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest job id, in bytes (ids are made here: 32 hex digits).
pub const MAX_JOB_ID_LEN: usize = 64;

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Parse everything again and rewrite the difference.
    Full,
    /// Parse only files whose content changed.
    #[default]
    Incremental,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReanalyzeRequest {
    /// Directory to analyse, on the worker's file system (must be under its allowed roots).
    pub path: String,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobAccepted {
    pub job_id: String,
    pub project: String,
    pub status: &'static str,
}

/// `ms` (Unix) as the ISO 8601 UTC time with milliseconds the Function library writes (`iso_time`), so the
/// job times graph-api and the library write compare as strings.
fn iso_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Queue an analysis of `path` for the project; an analysis-worker picks it up. Progress arrives as
/// `analysis_*` events.
#[utoipa::path(post, path = "/admin/reanalyze", tag = "admin", params(ProjectParam), request_body = ReanalyzeRequest,
    responses((status = 202, body = JobAccepted), (status = 422, body = ErrorBody)))]
pub async fn reanalyze(
    State(state): State<AppState>,
    project: Project,
    Body(req): Body<ReanalyzeRequest>,
) -> Result<(StatusCode, Json<JobAccepted>), ApiError> {
    let invalid = |m: &str| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_path", m.to_owned());
    if req.path.is_empty() || req.path.len() > MAX_PATH_LEN || req.path.chars().any(char::is_control) {
        return Err(invalid(&format!("path must be 1 to {MAX_PATH_LEN} bytes without control characters")));
    }
    if !req.path.starts_with('/') {
        return Err(invalid("path must be absolute"));
    }
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    let names = RedisNames::new(&project.0);
    let mode = match req.mode {
        Mode::Full => "full",
        Mode::Incremental => "incremental",
    };
    let traceparent = current_traceparent().unwrap_or_default();
    let queued_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let now = iso_ms(queued_ms);
    // The job hash (and the project's job index) first, so a worker that reads the stream entry always finds it.
    // Three steps, not one pipeline: on a Redis Cluster the keys live in different slots (the job hash and the
    // index in their project's).
    let mut conn = state.conn();
    redis::pipe()
        .zadd(names.recent_jobs(), &job_id, queued_ms)
        .ignore()
        .hset_multiple(
            names.job(&job_id),
            &[
                ("job_id", job_id.as_str()),
                ("project", project.0.as_str()),
                ("path", req.path.as_str()),
                ("mode", mode),
                ("status", "queued"),
                ("created_at", now.as_str()),
                ("updated_at", now.as_str()),
            ],
        )
        .ignore()
        .query_async::<()>(&mut conn)
        .await?;
    redis::cmd("HSET").arg(JOB_PROJECTS_KEY).arg(&job_id).arg(project.0.as_str()).query_async::<()>(&mut conn).await?;
    redis::cmd("XADD")
        .arg(JOBS_STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(JOBS_STREAM_MAX_LEN)
        .arg("*")
        .arg(&[
            ("job_id", job_id.as_str()),
            ("project", project.0.as_str()),
            ("path", req.path.as_str()),
            ("mode", mode),
            ("traceparent", traceparent.as_str()),
        ])
        .query_async::<()>(&mut conn)
        .await?;
    tracing::info!(%job_id, project = %project.0, path = %req.path, mode, "analysis job queued");
    Ok((StatusCode::ACCEPTED, Json(JobAccepted { job_id, project: project.0.to_string(), status: "queued" })))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub job_id: String,
    pub project: String,
    pub path: Option<String>,
    pub mode: Option<String>,
    /// queued, running, completed, failed or cancelled.
    pub status: String,
    pub cancel_requested: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// Data of the job's latest event (progress, or its result).
    #[schema(value_type = Option<Object>)]
    pub last_event: Option<serde_json::Value>,
    pub last_event_id: Option<String>,
}

async fn load_job(state: &AppState, job_id: &str) -> Result<(ProjectName, HashMap<String, String>), ApiError> {
    let not_found = || ApiError::not_found(format!("no job {job_id:?}"));
    if job_id.len() > MAX_JOB_ID_LEN || !job_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(not_found());
    }
    let mut conn = state.conn();
    let project: Option<String> = redis::cmd("HGET").arg(JOB_PROJECTS_KEY).arg(job_id).query_async(&mut conn).await?;
    let project = project.and_then(|p| ProjectName::parse(&p).ok()).ok_or_else(not_found)?;
    let fields: HashMap<String, String> =
        redis::cmd("HGETALL").arg(RedisNames::new(&project).job(job_id)).query_async(&mut conn).await?;
    if fields.is_empty() {
        return Err(not_found());
    }
    Ok((project, fields))
}

fn job_view(job_id: &str, project: &ProjectName, mut f: HashMap<String, String>) -> Job {
    Job {
        job_id: job_id.to_owned(),
        project: project.to_string(),
        path: f.remove("path"),
        mode: f.remove("mode"),
        status: f.remove("status").unwrap_or_else(|| "unknown".into()),
        cancel_requested: f.get("cancel_requested").is_some_and(|v| v == "1"),
        created_at: f.remove("created_at"),
        updated_at: f.remove("updated_at"),
        last_event: f.remove("last_event").and_then(|s| serde_json::from_str(&s).ok()),
        last_event_id: f.remove("last_event_id"),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// Most jobs (default 20, at most 100).
    pub limit: Option<usize>,
    #[allow(dead_code)]
    project: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub project: String,
    /// Newest first: queued by graph-api, or run by a worker (command line, watch runs), while their record lasts
    /// (`analysis.job_ttl_secs` after they ended).
    pub jobs: Vec<Job>,
}

/// Most jobs one listing returns.
pub const MAX_JOBS_LISTED: usize = 100;

/// The project's recent analysis jobs, newest first, whoever started them.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", params(ProjectParam, JobListParams),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    project: Project,
    Params(p): Params<JobListParams>,
) -> Result<Json<JobList>, ApiError> {
    let limit = p.limit.unwrap_or(20).clamp(1, MAX_JOBS_LISTED);
    let names = RedisNames::new(&project.0);
    let mut conn = state.conn();
    let ids: Vec<String> =
        redis::cmd("ZREVRANGE").arg(names.recent_jobs()).arg(0).arg(limit - 1).query_async(&mut conn).await?;
    let mut jobs = Vec::with_capacity(ids.len());
    if !ids.is_empty() {
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(names.job(id));
        }
        let records: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        let mut expired = Vec::new();
        for (id, fields) in ids.iter().zip(records) {
            if fields.is_empty() {
                expired.push(id);
            } else {
                jobs.push(job_view(id, &project.0, fields));
            }
        }
        if !expired.is_empty() {
            // Their records expired (or were never kept): the index forgets them too.
            redis::cmd("ZREM").arg(names.recent_jobs()).arg(&expired).query_async::<()>(&mut conn).await?;
        }
    }
    Ok(Json(JobList { project: project.0.to_string(), jobs }))
}

#[utoipa::path(get, path = "/admin/jobs/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn get_job(State(state): State<AppState>, Path(job_id): Path<String>) -> Result<Json<Job>, ApiError> {
    let (project, fields) = load_job(&state, &job_id).await?;
    Ok(Json(job_view(&job_id, &project, fields)))
}

/// Ask the worker running (or about to run) the job to stop; it stops within a second and reports
/// `analysis_cancelled`. A finished job cannot be cancelled (409).
#[utoipa::path(post, path = "/admin/jobs/{id}/cancel", tag = "admin", params(("id" = String, Path)),
    responses((status = 202, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let (project, mut fields) = load_job(&state, &job_id).await?;
    let status = fields.get("status").cloned().unwrap_or_default();
    if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
        return Err(ApiError::new(StatusCode::CONFLICT, "job_finished", format!("job {job_id} is already {status}")));
    }
    let key = RedisNames::new(&project).job(&job_id);
    // The hash first (a worker checks it), then the announcement; two commands, as on a cluster they go to
    // different nodes.
    let mut conn = state.conn();
    redis::cmd("HSET").arg(&key).arg("cancel_requested").arg("1").query_async::<()>(&mut conn).await?;
    redis::cmd("PUBLISH").arg(JOBS_CANCEL_CHANNEL).arg(&job_id).query_async::<()>(&mut conn).await?;
    fields.insert("cancel_requested".into(), "1".into());
    Ok((StatusCode::ACCEPTED, Json(job_view(&job_id, &project, fields))))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetDone {
    pub event_id: String,
}

/// Remove the project's whole graph (one `graph_reset` event). Versions keep growing afterwards. The reset itself
/// is O(1) inside Redis (a new generation begins); the old graph's keys are removed afterwards in the background,
/// in bounded steps.
#[utoipa::path(post, path = "/admin/reset", tag = "admin", params(ProjectParam), responses((status = 200, body = ResetDone)))]
pub async fn reset(State(state): State<AppState>, project: Project) -> Result<Json<ResetDone>, ApiError> {
    let tp = current_traceparent();
    let writer = state.writer(&project.0);
    let event_id = writer.reset(&mut state.conn(), "admin reset", tp.as_deref()).await?;
    state.metrics.events_published.inc();
    // Also finishes what an earlier reset whose sweep was cut short (a crash) left behind.
    tokio::spawn(sweep_project(state.clone(), writer.names().clone()));
    Ok(Json(ResetDone { event_id }))
}

/// Removes what resets left behind in one project, in bounded `cg_sweep` calls; logs and gives up on an error
/// (the work stays recorded in Redis for the next sweep).
async fn sweep_project(state: AppState, names: RedisNames) {
    match functions::sweep_all(&mut state.conn(), &names).await {
        Ok(calls) => tracing::debug!(project = %names.project(), calls, "swept the graph a reset left behind"),
        Err(e) => {
            tracing::warn!(project = %names.project(), error = %e, "sweeping after a reset failed; retried at the next reset or start")
        }
    }
}

/// Finishes the sweeps of every project, e.g. those a crashed graph-api left half done. For graph-api's start:
/// `tokio::spawn(routes::admin::sweep_every_project(state.clone()))`.
pub async fn sweep_every_project(state: AppState) {
    let projects: Vec<String> = match redis::cmd("SMEMBERS").arg(PROJECTS_KEY).query_async(&mut state.conn()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not list projects to sweep; retried at the next reset or start");
            return;
        }
    };
    for project in projects.iter().filter_map(|p| ProjectName::parse(p).ok()) {
        sweep_project(state.clone(), RedisNames::new(&project)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_419), (2025, 11, 27));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(super::iso_ms(1_764_201_600_123), "2025-11-27T00:00:00.123Z");
        assert_eq!(super::iso_ms(951_782_400_005), "2000-02-29T00:00:00.005Z");
    }
}
