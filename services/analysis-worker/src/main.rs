//! `analysis-worker`: with no subcommand, the service (job queue consumer plus `/health`, `/ready`,
//! `/metrics`, `/status`, and the sweep that expires finished job records); `analyze` analyses one folder once;
//! `watch` keeps a folder's graph current. Queued jobs may read only the configured allowed roots (none by
//! default); the two commands may also read the folder given with `--path`.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use analysis_worker::{
    http::{router, AppState},
    job::{CancelFlag, JobEnd, JobRunner, JobSpec},
    queue, retention,
    settings::{WorkerSettings, SERVICE},
    status::WorkerStatus,
    sync::Mode,
    watch, watches,
};
use clap::{Parser, Subcommand};
use codegraph_shared::{project::ProjectName, redis_handle::RedisHandle, shutdown::Shutdown};

#[global_allocator]
static ALLOCATOR: analysis_worker::alloc::Allocator = analysis_worker::alloc::Allocator;

#[derive(Parser)]
#[command(
    name = "analysis-worker",
    about = "Turns repositories into the code graph",
    after_help = "Examples:\n  \
      analysis-worker analyze --project mine --path ~/src/mine    analyse a folder once (any folder you name)\n  \
      analysis-worker watch --project mine --path .              keep a folder's graph current until Ctrl-C\n  \
      CODEGRAPH__ANALYSIS__ALLOWED_ROOTS=/srv/repos analysis-worker\n      \
      run the service: queued jobs and watches (POST /api/graph/admin/watch) under the allowed roots\n\n\
      Redis: CODEGRAPH__REDIS__URL (default redis://127.0.0.1:6379). Settings: defaults, then\n\
      config/analysis-worker.toml, then CODEGRAPH__SECTION__KEY (README, Configuration)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse a folder once (incrementally unless --full) and print a summary.
    Analyze {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long)]
        path: PathBuf,
        /// Compare every file and remove whatever no file produces, not only what changed.
        #[arg(long)]
        full: bool,
    },
    /// Analyse a folder, then again after every change to it, until interrupted.
    Watch {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long)]
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings: WorkerSettings = match codegraph_shared::settings::load(SERVICE) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("analysis-worker: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = rayon::ThreadPoolBuilder::new().num_threads(settings.analysis.threads.max(1)).build_global();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("analysis-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = codegraph_shared::telemetry::init(SERVICE, &settings.telemetry);
        let redis = match RedisHandle::from_settings(&settings.redis) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("analysis-worker: invalid redis url: {e}");
                return ExitCode::from(2);
            }
        };
        let mut analysis = settings.analysis.clone();
        // A folder named on the command line is allowed: whoever runs the command already has it. Queued jobs
        // stay limited to the configured roots (none by default).
        if let Some(Command::Analyze { path, .. } | Command::Watch { path, .. }) = &cli.command {
            analysis.grant(path.clone());
        }
        let runner = JobRunner {
            redis: redis.clone(),
            redis_settings: settings.redis.clone(),
            settings: analysis,
            show_bar: cli.command.is_some(),
            turns: Default::default(),
        };
        match cli.command {
            None => serve(settings, redis, runner).await,
            Some(Command::Analyze { project, path, full }) => analyze(runner, &project, path, full).await,
            Some(Command::Watch { project, path }) => watch_folder(runner, &project, path).await,
        }
    })
}

/// What both command-line modes need first: a valid project name (exit 2 otherwise) and a usable Redis with the
/// Function library (exit 1 otherwise).
async fn prepare(runner: &JobRunner, name: &str) -> Result<ProjectName, ExitCode> {
    let project = ProjectName::parse(name).map_err(|e| {
        eprintln!("analysis-worker: {e}");
        ExitCode::from(2)
    })?;
    if let Err(e) = runner.redis.conn().ensure_library().await {
        eprintln!("analysis-worker: redis at {} is not usable: {e}", runner.redis_settings.url);
        return Err(ExitCode::FAILURE);
    }
    Ok(project)
}

async fn analyze(runner: JobRunner, project_name: &str, path: PathBuf, full: bool) -> ExitCode {
    let project = match prepare(&runner, project_name).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let job_id = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let spec = JobSpec { job_id, project, path, mode: if full { Mode::Full } else { Mode::Incremental } };
    let cancel = CancelFlag::default();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let (_, end) = runner.run(&spec, analysis_worker::analysis::Analyzer::new(), cancel).await;
    print_end(&spec, &end)
}

fn print_end(spec: &JobSpec, end: &JobEnd) -> ExitCode {
    match end {
        JobEnd::Completed(s) => {
            let r = &s.report;
            let langs: Vec<String> = r.languages.iter().map(|(l, n)| format!("{l} {n}")).collect();
            println!(
                "{}: {} files ({}), {} lines in {:.2}s; graph {} nodes, {} relationships; {} files changed, {} mutations, {} graph events; skipped {} (binary {}, huge {}), errors {}",
                spec.job_id,
                r.files,
                langs.join(", "),
                r.lines,
                s.duration.as_secs_f64(),
                s.nodes,
                s.relationships,
                s.changed_files,
                s.mutations,
                s.events,
                r.skipped(),
                r.skipped_binary,
                r.skipped_huge,
                r.failed.len()
            );
            let (t, ms) = (&s.steps, |d: std::time::Duration| d.as_millis());
            println!(
                "  steps: analyse {} ms (pick files {}, read+parse {}, resolve {}, build {}), plan {} ms, write {} ms",
                ms(t.analyze),
                ms(t.analysis.load),
                ms(t.analysis.parse),
                ms(t.analysis.resolve),
                ms(t.analysis.build),
                ms(t.plan),
                ms(t.write)
            );
            for (lang, c) in &r.calls {
                let total = c.resolved + c.unresolved;
                if total > 0 {
                    println!(
                        "  calls {lang}: {} of {} resolved ({:.1}%)",
                        c.resolved,
                        total,
                        100.0 * c.resolved as f64 / total as f64
                    );
                }
            }
            for (file, error) in r.failed.iter().take(10) {
                println!("  failed: {file}: {error}");
            }
            ExitCode::SUCCESS
        }
        JobEnd::Cancelled => {
            println!("{}: cancelled", spec.job_id);
            ExitCode::from(130)
        }
        JobEnd::Failed(e) => {
            eprintln!("{}: failed: {e}", spec.job_id);
            ExitCode::FAILURE
        }
    }
}

async fn watch_folder(runner: JobRunner, project_name: &str, path: PathBuf) -> ExitCode {
    let project = match prepare(&runner, project_name).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    let shutdown = Shutdown::on_signals();
    let shown = path.clone();
    let result = watch::watch(runner, project.clone(), path, shutdown, |event| {
        if let watch::WatchEvent::RunEnded { job_id, end } = event {
            let spec = JobSpec {
                job_id: job_id.into(),
                project: project.clone(),
                path: shown.clone(),
                mode: Mode::Incremental,
            };
            print_end(&spec, end);
        }
    })
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analysis-worker: watch failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: WorkerSettings, redis: RedisHandle, runner: JobRunner) -> ExitCode {
    let shutdown = Shutdown::on_signals();
    let consumer = format!(
        "{}-{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let status = Arc::new(WorkerStatus::new(consumer));
    let app = router(AppState { redis, status: status.clone() });
    let sweeps = tokio::spawn(retention::run(runner.clone(), shutdown.clone()));
    let watching = tokio::spawn(watches::run(runner.clone(), status.clone(), shutdown.clone()));
    let jobs = tokio::spawn(queue::run(runner, status, shutdown.clone()));
    let served = codegraph_shared::http::serve(&settings.http.addr, app, shutdown.clone()).await;
    shutdown.trigger();
    let _ = jobs.await;
    let _ = watching.await;
    let _ = sweeps.await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analysis-worker: cannot serve on {}: {e}", settings.http.addr);
            ExitCode::FAILURE
        }
    }
}
