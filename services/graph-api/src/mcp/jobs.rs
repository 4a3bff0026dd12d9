//! `reanalyze` as one MCP request: queue the job exactly as `POST /admin/reanalyze` does, relay the job's own
//! `analysis_*` events (the analysis-worker's progress, from the project's event channel) as MCP progress
//! notifications, answer with the job's final state; an MCP cancellation of the request asks the worker to stop
//! exactly as `POST /admin/jobs/{id}/cancel` does (the worker stops within a second).

use std::time::Duration;

use axum::{
    extract::{Path, State},
    Json,
};
use codegraph_shared::{http::ApiError, project::ProjectName, pubsub::Incoming};
use rmcp::{
    model::{ProgressNotificationParam, ProgressToken},
    Peer, RoleServer,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::watch::subscribe_project;
use crate::{
    extract::{Body, Project},
    routes::admin::{self, Job, Mode, ReanalyzeRequest},
    state::AppState,
};

/// How often the job hash is read while waiting, in case a Pub/Sub message (the final event, say) was lost.
const STATUS_CHECK: Duration = Duration::from_secs(1);

/// Where progress goes: the request's progress token and its session (absent: the client asked for none).
pub struct ProgressSink {
    pub peer: Peer<RoleServer>,
    pub token: ProgressToken,
}

/// How an analysis ended, with the job as stored.
pub enum Outcome {
    Finished(Job),
    /// The MCP request was cancelled and the cancel passed on; the job as it was then.
    Cancelled(Job),
}

fn is_finished(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// A job event as published: `{"type", "entity": {"kind": "job", "id"}, "data": {…}}`.
#[derive(Deserialize)]
struct JobEvent {
    #[serde(rename = "type")]
    event_type: String,
    entity: Entity,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Entity {
    kind: String,
    id: String,
}

/// Runs one analysis to its end (or its cancellation). The subscription is made before the job is queued, so
/// none of its events can pass unseen.
pub async fn run(
    state: &AppState,
    project: &ProjectName,
    path: String,
    mode: Mode,
    progress: Option<ProgressSink>,
    ct: CancellationToken,
) -> Result<Outcome, ApiError> {
    // `None` after a lost subscription could not be made again: the periodic status check still sees the end.
    let mut events = Some(subscribe_project(&state.redis, project).await?);
    let (_, Json(accepted)) =
        admin::reanalyze(State(state.clone()), Project(project.clone()), Body(ReanalyzeRequest { path, mode })).await?;
    let job_id = accepted.job_id;
    let mut reported: Option<f64> = None;
    let mut check = tokio::time::interval(STATUS_CHECK);
    check.tick().await;
    loop {
        tokio::select! {
            _ = ct.cancelled() => return cancel(state, &job_id).await,
            _ = check.tick() => {
                let job = job(state, &job_id).await?;
                if is_finished(&job.status) {
                    return Ok(Outcome::Finished(job));
                }
            }
            incoming = async { events.as_mut().expect("enabled only with a subscription").next().await },
                if events.is_some() => match incoming {
                Incoming::Message { payload, .. } => {
                    let Ok(event) = serde_json::from_slice::<JobEvent>(&payload) else { continue };
                    if event.entity.kind != "job" || event.entity.id != job_id {
                        continue;
                    }
                    if let Some(sink) = &progress {
                        if let Some((value, total, message)) = progress_of(&event) {
                            // Progress must grow: a value not above the last one sent is skipped.
                            if reported.is_none_or(|last| value > last) {
                                reported = Some(value);
                                let param = ProgressNotificationParam::new(sink.token.clone(), value)
                                    .with_total(total)
                                    .with_message(message);
                                let _ = sink.peer.notify_progress(param).await;
                            }
                        }
                    }
                    if event.event_type.starts_with("analysis_") && is_final(&event.event_type) {
                        return Ok(Outcome::Finished(job(state, &job_id).await?));
                    }
                }
                Incoming::Other => {}
                // Progress between the loss and the new subscription is not relayed; the end still is.
                Incoming::Unsubscribed(_) | Incoming::Lost(_) => {
                    events = subscribe_project(&state.redis, project)
                        .await
                        .inspect_err(|e| tracing::warn!(error = %e, job_id, "job events lost; following its status only"))
                        .ok();
                }
            }
        }
    }
}

fn is_final(event_type: &str) -> bool {
    matches!(event_type, "analysis_completed" | "analysis_failed" | "analysis_cancelled")
}

/// Progress in percent (total 100) and a line saying where the job is.
fn progress_of(event: &JobEvent) -> Option<(f64, f64, String)> {
    let d = &event.data;
    let num = |k: &str| d.get(k).and_then(serde_json::Value::as_f64);
    match event.event_type.as_str() {
        "analysis_started" => Some((0.0, 100.0, format!("started: {} files", num("total_files").unwrap_or(0.0)))),
        "analysis_progress" => {
            let phase = d.get("phase").and_then(|v| v.as_str()).unwrap_or("working");
            let file = d.get("current_file").and_then(|v| v.as_str()).unwrap_or("");
            let message = format!(
                "{phase}: {}/{} files{}{file}",
                num("files_done").unwrap_or(0.0),
                num("total_files").unwrap_or(0.0),
                if file.is_empty() { "" } else { ", " }
            );
            Some((num("percent").unwrap_or(0.0).clamp(0.0, 100.0), 100.0, message))
        }
        "analysis_completed" => Some((100.0, 100.0, "completed".to_owned())),
        _ => None,
    }
}

async fn job(state: &AppState, job_id: &str) -> Result<Job, ApiError> {
    let Json(job) = admin::get_job(State(state.clone()), Path(job_id.to_owned())).await?;
    Ok(job)
}

/// The admin cancel. No wait for the worker's confirmation: the client abandoned the request, so nobody reads
/// the answer (the worker stops within a second and reports `analysis_cancelled`).
async fn cancel(state: &AppState, job_id: &str) -> Result<Outcome, ApiError> {
    match admin::cancel_job(State(state.clone()), Path(job_id.to_owned())).await {
        Ok((_, Json(job))) => {
            tracing::info!(job_id, "MCP request cancelled: analysis job cancel requested");
            Ok(Outcome::Cancelled(job))
        }
        // Finished in the meantime: nothing to stop.
        Err(e) if e.code == "job_finished" => Ok(Outcome::Finished(job(state, job_id).await?)),
        Err(e) => Err(e),
    }
}
