//! One analysis job from start to end: check the path, discover, parse, resolve, write the difference, and
//! tell the world through `analysis_*` events on entity kind `job` (which also keep the job hash current).
//! Used alike by the queue consumer, the `analyze` command and watch mode. A finished job's hash expires after
//! `job_ttl_secs` (a running one never does); a Redis error's text goes to the log, and the job record, which
//! clients read, gets a generic message with the id of that log line.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use codegraph_shared::{
    event::EventType,
    functions::{GraphWriter, Mutation, MutationError},
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    settings::RedisSettings,
    telemetry::current_traceparent,
};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{
    analysis::{root_name, Analyzer, Hooks, Report},
    discover::check_allowed,
    fresh,
    progress::{Phase, Progress, TerminalBar},
    settings::AnalysisSettings,
    sync::{self, Mode},
};

/// What a job's record says when Redis failed: the step and the id of the log line with Redis' own text, which
/// may describe the server (its configuration, scripts, keys) and so stays out of what clients read.
fn redis_failure(step: &str, e: &redis::RedisError) -> String {
    let error_id = codegraph_shared::http::error_id();
    tracing::error!(error = %e, error_id, step, "redis error during an analysis job");
    format!("{step} failed: redis error (error id {error_id}; the details are in the analysis-worker log)")
}

/// Calls of a fresh project's graph sent before the reply to the first of them has come.
const WRITES_IN_FLIGHT: usize = 3;

/// Longest list of failed files reported in `analysis_completed`.
const MAX_REPORTED_FAILURES: usize = 20;
/// Most changed files a [`Summary`] names.
pub const MAX_CHANGED_SAMPLE: usize = 20;

/// What to analyse.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub job_id: String,
    pub project: ProjectName,
    pub path: PathBuf,
    pub mode: Mode,
}

/// Set when a cancel request for the job arrives (Pub/Sub or the job hash); checked between files and chunks.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a completed job did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub nodes: usize,
    pub relationships: usize,
    pub report: Report,
    pub changed_files: usize,
    /// The first [`MAX_CHANGED_SAMPLE`] changed files (sorted), for the watch status.
    pub changed_sample: Vec<String>,
    pub mutations: usize,
    pub events: usize,
    pub duration: Duration,
    pub steps: Steps,
}

/// Wall time of the steps of a job.
#[derive(Clone, Copy, Debug, Default)]
pub struct Steps {
    /// Discovery to desired graph, in memory.
    pub analyze: Duration,
    /// The parts of `analyze`.
    pub analysis: crate::analysis::Timings,
    /// Reading what Redis holds and computing the difference.
    pub plan: Duration,
    /// Writing the difference.
    pub write: Duration,
}

#[derive(Clone, Debug)]
pub enum JobEnd {
    Completed(Box<Summary>),
    Cancelled,
    Failed(String),
}

/// Everything a job needs besides its spec.
#[derive(Clone)]
pub struct JobRunner {
    pub redis: RedisHandle,
    pub redis_settings: RedisSettings,
    pub settings: AnalysisSettings,
    /// Draw a progress bar on a terminal (the CLI).
    pub show_bar: bool,
    /// Runs of this process, one at a time per project.
    pub turns: ProjectTurns,
}

/// One run at a time per project within a process: a queued job and a watch run of the same project would
/// otherwise both compute their difference against what Redis holds and write it, the work done twice. (Runs in
/// different processes are not serialised: they converge the same way.)
#[derive(Clone, Default)]
pub struct ProjectTurns(Arc<std::sync::Mutex<std::collections::HashMap<ProjectName, Arc<tokio::sync::Mutex<()>>>>>);

impl ProjectTurns {
    /// Waits until no other run of `project` in this process is under way; the turn lasts as long as the guard.
    pub async fn take(&self, project: &ProjectName) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self.0.lock().expect("turns lock").entry(project.clone()).or_default().clone();
        turn.lock_owned().await
    }
}

impl JobRunner {
    pub fn writer(&self, project: &ProjectName) -> GraphWriter {
        GraphWriter::new(
            RedisNames::new(project),
            self.redis_settings.stream_max_len,
            self.redis_settings.publish_mode(),
        )
    }

    async fn emit(&self, writer: &GraphWriter, t: EventType, job_id: &str, data: Value) {
        let mut conn = self.redis.conn();
        let tp = current_traceparent();
        if let Err(e) = writer.emit(&mut conn, t, "job", job_id, &data, tp.as_deref()).await {
            tracing::warn!(error = %e, job_id, event = t.as_str(), "could not emit a job event");
        }
    }

    /// Runs one job; `analyzer` carries parsed facts between runs (watch mode) and is handed back.
    pub async fn run(&self, spec: &JobSpec, analyzer: Analyzer, cancel: CancelFlag) -> (Analyzer, JobEnd) {
        let _turn = self.turns.take(&spec.project).await;
        let started = Instant::now();
        let writer = self.writer(&spec.project);
        let job_id = spec.job_id.as_str();
        let (analyzer, end) = self.run_inner(spec, &writer, analyzer, &cancel, started).await;
        match &end {
            JobEnd::Completed(s) => {
                let failed: Vec<Value> = s
                    .report
                    .failed
                    .iter()
                    .take(MAX_REPORTED_FAILURES)
                    .map(|(p, e)| json!({"file": p, "error": e}))
                    .collect();
                let calls: BTreeMap<&str, Value> = s
                    .report
                    .calls
                    .iter()
                    .map(|(l, c)| (*l, json!({"resolved": c.resolved, "unresolved": c.unresolved})))
                    .collect();
                let data = json!({
                    "job_id": job_id,
                    "nodes": s.nodes,
                    "relationships": s.relationships,
                    "files": s.report.files,
                    "skipped": s.report.skipped(),
                    "errors": s.report.failed.len(),
                    "errors_kept_previous_graph": s.report.kept_previous,
                    "duration_ms": s.duration.as_millis() as u64,
                    "changed_files": s.changed_files,
                    "mutations": s.mutations,
                    "graph_events": s.events,
                    "skipped_binary": s.report.skipped_binary,
                    "skipped_huge": s.report.skipped_huge,
                    "files_with_syntax_errors": s.report.files_with_syntax_errors,
                    "failed_files": failed,
                    "calls": calls,
                });
                self.emit(&writer, EventType::AnalysisCompleted, job_id, data).await;
            }
            JobEnd::Cancelled => {
                self.emit(&writer, EventType::AnalysisCancelled, job_id, json!({"job_id": job_id})).await;
            }
            JobEnd::Failed(error) => {
                let data = json!({"job_id": job_id, "error": error});
                self.emit(&writer, EventType::AnalysisFailed, job_id, data).await;
            }
        }
        self.expire_record(&writer, job_id).await;
        (analyzer, end)
    }

    /// Gives the finished job's hash its time to live (the job → project index follows, see
    /// [`crate::retention`]). A failure is only logged: the retention sweep sets what was missed.
    async fn expire_record(&self, writer: &GraphWriter, job_id: &str) {
        let Some(ttl) = self.settings.job_ttl() else { return };
        let r: redis::RedisResult<i64> = redis::cmd("EXPIRE")
            .arg(writer.names().job(job_id))
            .arg(ttl.as_secs())
            .query_async(&mut self.redis.conn())
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, job_id, "could not set the finished job's time to live");
        }
    }

    async fn run_inner(
        &self,
        spec: &JobSpec,
        writer: &GraphWriter,
        analyzer: Analyzer,
        cancel: &CancelFlag,
        started: Instant,
    ) -> (Analyzer, JobEnd) {
        let root = match check_allowed(&spec.path, &self.settings.allowed_roots()) {
            Ok(r) => r,
            Err(e) => return (analyzer, JobEnd::Failed(e.to_string())),
        };
        let max = self.settings.max_file_bytes;
        let walk_root = root.clone();
        let mut analyzer = analyzer;
        let (analyzer, found) = match tokio::task::spawn_blocking(move || {
            let found = analyzer.discover(&walk_root, max);
            (analyzer, found)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return (Analyzer::new(), JobEnd::Failed(format!("discovery failed: {e}"))),
        };
        let mut languages: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &found.files {
            *languages.entry(f.language.name()).or_default() += 1;
        }
        let data = json!({
            "job_id": spec.job_id,
            "total_files": found.files.len(),
            "languages": languages,
            "path": root.display().to_string(),
            "mode": spec.mode.as_str(),
        });
        self.emit(writer, EventType::AnalysisStarted, &spec.job_id, data).await;

        let progress = Arc::new(Progress::new(found.files.len()));
        progress.set_phase(Phase::Parse);
        let stop = Arc::new(tokio::sync::Notify::new());
        let ticker = tokio::spawn(self.clone().tick(
            spec.clone(),
            writer.clone(),
            progress.clone(),
            cancel.clone(),
            stop.clone(),
        ));

        let result = self.analyze_and_write(spec, writer, analyzer, &root, found, &progress, cancel).await;
        progress.set_phase(Phase::Done);
        stop.notify_one();
        let _ = ticker.await;
        let (analyzer, end) = result;
        let end = match end {
            Ok(Some(mut s)) => {
                s.duration = started.elapsed();
                JobEnd::Completed(Box::new(s))
            }
            Ok(None) => JobEnd::Cancelled,
            Err(e) => JobEnd::Failed(e),
        };
        (analyzer, end)
    }

    /// `Ok(None)`: cancelled.
    #[allow(clippy::too_many_arguments)]
    async fn analyze_and_write(
        &self,
        spec: &JobSpec,
        writer: &GraphWriter,
        mut analyzer: Analyzer,
        root: &std::path::Path,
        found: crate::discover::Discovered,
        progress: &Arc<Progress>,
        cancel: &CancelFlag,
    ) -> (Analyzer, Result<Option<Summary>, String>) {
        let name = root_name(root);
        let mut steps = Steps::default();
        let started = Instant::now();
        let (p, c) = (progress.clone(), cancel.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let on_file = |done: usize, path: &str| p.file_done(done, path);
            let cancelled = || c.is_cancelled();
            let hooks = Hooks { on_file: &on_file, cancelled: &cancelled };
            let result = analyzer.run_unbuilt(&found, &name, &hooks);
            (analyzer, result)
        })
        .await;
        let (analyzer, result) = match joined {
            Ok(r) => r,
            Err(e) => return (Analyzer::new(), Err(format!("the analysis panicked: {e}"))),
        };
        let Ok(analysis) = result else { return (analyzer, Ok(None)) };
        if cancel.is_cancelled() {
            return (analyzer, Ok(None));
        }
        progress.set_phase(Phase::Resolve);
        let mut conn = self.redis.conn();
        // A fresh project is written as its graph is built, file by file (see `crate::fresh`).
        if analyzer.streams_fresh() {
            match fresh::is_fresh(&mut conn, writer.names()).await {
                Ok(true) => {
                    steps.analyze = started.elapsed();
                    steps.analysis = analysis.timings;
                    let summary = self.write_fresh(writer, analysis, progress, cancel, steps).await;
                    return (analyzer, summary);
                }
                Ok(false) => {}
                Err(e) => return (analyzer, Err(redis_failure("reading the current graph", &e))),
            }
        }
        let joined = tokio::task::spawn_blocking(move || {
            let (mut analyzer, mut analysis) = (analyzer, analysis);
            analyzer.build(&mut analysis);
            (analyzer, analysis)
        })
        .await;
        let (analyzer, analysis) = match joined {
            Ok(r) => r,
            Err(e) => return (Analyzer::new(), Err(format!("the analysis panicked: {e}"))),
        };
        steps.analyze = started.elapsed();
        steps.analysis = analysis.timings;
        let started = Instant::now();
        let plan = match sync::plan(&mut conn, writer, &analysis, spec.mode).await {
            Ok(p) => p,
            Err(e) => return (analyzer, Err(redis_failure("reading the current graph", &e))),
        };
        steps.plan = started.elapsed();
        let started = Instant::now();
        progress.ops(0, plan.delta.len());
        progress.set_phase(Phase::Write);
        let c = cancel.clone();
        let cancelled = move || c.is_cancelled();
        let p = progress.clone();
        let mut on_chunk = move |done: usize, total: usize| p.ops(done, total);
        let tp = current_traceparent();
        let applied = match sync::apply(&mut conn, writer, &plan, tp.as_deref(), &cancelled, &mut on_chunk).await {
            Ok(a) => a,
            Err(MutationError::Redis(e)) => return (analyzer, Err(redis_failure("writing the graph", &e))),
            // The Function library's own refusals name ids of this job's graph, not Redis internals.
            Err(e) => return (analyzer, Err(format!("writing the graph failed: {e}"))),
        };
        if applied.cancelled {
            return (analyzer, Ok(None));
        }
        steps.write = started.elapsed();
        let changed_files = plan.changed_files.len();
        let changed_sample = plan.changed_files.iter().take(MAX_CHANGED_SAMPLE).cloned().collect();
        drop(plan);
        let summary = Summary {
            nodes: analysis.graph.node_count(),
            relationships: analysis.graph.rel_count(),
            report: analysis.report,
            changed_files,
            changed_sample,
            mutations: applied.written,
            events: applied.events,
            duration: Duration::ZERO,
            steps,
        };
        (analyzer, Ok(Some(summary)))
    }

    /// Writes a fresh project's graph as [`fresh::produce`] builds it, call by call; records every file's hash
    /// once all of it is written. `Ok(None)`: cancelled.
    async fn write_fresh(
        &self,
        writer: &GraphWriter,
        analysis: crate::analysis::Analysis,
        progress: &Arc<Progress>,
        cancel: &CancelFlag,
        mut steps: Steps,
    ) -> Result<Option<Summary>, String> {
        let started = Instant::now();
        let most = fresh::most_mutations(&analysis);
        progress.ops(0, most);
        progress.set_phase(Phase::Write);
        // A few calls ahead of the writes: enough to keep Redis busy while the next group is built.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Mutation>>(4);
        let producer = tokio::task::spawn_blocking(move || {
            let sent = fresh::produce(&analysis, &mut |call| tx.blocking_send(call).is_ok());
            (analysis, sent)
        });
        let traceparent = current_traceparent();
        let tp = traceparent.as_deref();
        let mut applied = sync::Applied::default();
        let mut failure = None;
        // Several calls in flight on the shared connection: Redis runs them in the order they were sent (each
        // future sends its call when first polled, and `FuturesOrdered` first polls them in the order pushed), and
        // works on the next while the worker reads a reply. All are upserts of entities that do not exist yet, so
        // no call is ever retried out of order; a refused one ends the job (those sent after it may be applied:
        // the next run compares with Redis, the hashes being recorded only after a complete write).
        let mut in_flight = futures_util::stream::FuturesOrdered::new();
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                done = in_flight.next(), if !in_flight.is_empty() => match done {
                    Some(Ok((n, events))) => {
                        applied.written += n;
                        applied.events += events;
                        progress.ops(applied.written, most.max(applied.written));
                    }
                    Some(Err(e)) => {
                        failure = Some(e);
                        break;
                    }
                    None => {}
                },
                call = rx.recv(), if open && in_flight.len() < WRITES_IN_FLIGHT => match call {
                    Some(_) if cancel.is_cancelled() => {
                        applied.cancelled = true;
                        open = false;
                    }
                    Some(call) => {
                        let mut conn = self.redis.conn();
                        in_flight.push_back(async move {
                            sync::write_one(&mut conn, writer, &call, tp).await.map(|events| (call.len(), events))
                        });
                    }
                    None => open = false,
                },
                else => break,
            }
        }
        drop(in_flight);
        drop(rx);
        let (analysis, sent) = producer.await.map_err(|e| format!("the analysis panicked: {e}"))?;
        match failure {
            Some(MutationError::Redis(e)) => return Err(redis_failure("writing the graph", &e)),
            Some(e) => return Err(format!("writing the graph failed: {e}")),
            None => {}
        }
        let Some(sent) = sent.filter(|_| !applied.cancelled) else { return Ok(None) };
        let plan = sync::Plan {
            changed_files: analysis.hashes.keys().cloned().collect(),
            set_hashes: analysis.hashes.iter().map(|(p, h)| (p.clone(), h.clone())).collect(),
            ..Default::default()
        };
        match sync::record_hashes(&mut self.redis.conn(), writer, &plan).await {
            Ok(()) => {}
            Err(MutationError::Redis(e)) => return Err(redis_failure("writing the graph", &e)),
            Err(e) => return Err(format!("writing the graph failed: {e}")),
        }
        steps.write = started.elapsed();
        Ok(Some(Summary {
            nodes: sent.nodes,
            relationships: sent.relationships,
            report: analysis.report,
            changed_files: plan.changed_files.len(),
            changed_sample: plan.changed_files.iter().take(MAX_CHANGED_SAMPLE).cloned().collect(),
            mutations: applied.written,
            events: applied.events,
            duration: Duration::ZERO,
            steps,
        }))
    }

    /// Reports progress at most once per interval while the job runs, and watches the job hash for a cancel
    /// request (in case the Pub/Sub message was missed).
    async fn tick(
        self,
        spec: JobSpec,
        writer: GraphWriter,
        progress: Arc<Progress>,
        cancel: CancelFlag,
        stop: Arc<tokio::sync::Notify>,
    ) {
        let bar = self.show_bar.then(TerminalBar::new);
        let interval = Duration::from_millis(self.settings.progress_interval_ms.max(10));
        let mut last = None;
        let mut last_cancel_check = Instant::now();
        let job_key = writer.names().job(&spec.job_id);
        loop {
            tokio::select! {
                _ = stop.notified() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            let r = progress.read();
            if let Some(b) = &bar {
                b.draw(&r);
            }
            if last.as_ref() != Some(&r) {
                self.emit(&writer, EventType::AnalysisProgress, &spec.job_id, r.event_data(&spec.job_id)).await;
                last = Some(r);
            }
            if last_cancel_check.elapsed() >= Duration::from_millis(250) {
                last_cancel_check = Instant::now();
                let mut conn = self.redis.conn();
                let flag: Option<String> = redis::cmd("HGET")
                    .arg(&job_key)
                    .arg("cancel_requested")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                if flag.as_deref() == Some("1") {
                    cancel.cancel();
                }
            }
        }
        if let Some(b) = &bar {
            b.draw(&progress.read());
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_of_one_project_take_turns_and_other_projects_do_not_wait() {
        let turns = ProjectTurns::default();
        let a = ProjectName::parse("a").unwrap();
        let first = turns.take(&a).await;
        let wait = Duration::from_millis(50);
        assert!(tokio::time::timeout(wait, turns.take(&a)).await.is_err(), "a second run of a did not wait");
        let b = ProjectName::parse("b").unwrap();
        assert!(tokio::time::timeout(wait, turns.take(&b)).await.is_ok(), "a run of b waited for a");
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(5), turns.take(&a)).await.is_ok(), "a's turn never came");
    }
}
