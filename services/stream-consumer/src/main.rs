//! The `stream-consumer` binary: the service (default), `replay`, and `dlq list|redrive`.

use std::{process::ExitCode, sync::Arc};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use codegraph_shared::{project::ProjectName, redis_handle::RedisHandle, shutdown::Shutdown, telemetry};
use stream_consumer::{
    app::{self, ActiveSinks},
    dead_letters::DeadLetters,
    redrive::redrive,
    replay::{Replay, ReplayFrom},
    settings::{Settings, SERVICE},
    sinks::{falkordb::FalkorDbSink, memgraph::MemgraphSink, Sink},
};

#[derive(Parser)]
#[command(name = "stream-consumer", about = "Feeds the projects' CDC streams into graph databases")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Run,
    /// Rebuild one project in one sink from the stream or a snapshot.
    Replay {
        #[arg(long)]
        sink: String,
        #[arg(long)]
        project: String,
        /// Stream ID to start from (0: clear and rebuild from the start).
        #[arg(long, conflicts_with = "from_snapshot")]
        from: Option<String>,
        /// Clear, load graph-api's snapshot (or the Redis hashes without --api), then the stream after it.
        #[arg(long)]
        from_snapshot: bool,
        /// graph-api base URL for --from-snapshot, e.g. http://127.0.0.1:8000; without it Redis is read.
        #[arg(long)]
        api: Option<String>,
        /// Events per sink commit.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Dead letters of a sink.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Print the dead letters (JSON lines).
    List {
        #[arg(long)]
        sink: String,
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
    /// Apply the dead letters again; remove the applied and superseded ones.
    Redrive {
        #[arg(long)]
        sink: String,
        #[arg(long)]
        project: String,
        /// Only this dead letter (its own ID or the event's stream ID).
        #[arg(long)]
        id: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings: Settings = match codegraph_shared::settings::load(SERVICE) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stream-consumer: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(dispatch(cli, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream-consumer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let _guard = telemetry::init(SERVICE, &settings.telemetry);
            app::run(settings, Shutdown::on_signals()).await
        }
        Command::Replay { sink, project, from, from_snapshot, api, batch } => {
            let from = match (from, from_snapshot) {
                (_, true) => ReplayFrom::Snapshot { api },
                (None, false) => ReplayFrom::Start,
                (Some(id), false) if id == "0" || id == "0-0" => ReplayFrom::Start,
                (Some(id), false) => ReplayFrom::Id(id.parse()?),
            };
            let project = ProjectName::parse(&project)?;
            let report = match open_sink(&settings, &sink)? {
                Named::FalkorDb(s) => replay(&settings, s.as_ref(), project, batch, from).await?,
                Named::Memgraph(s) => replay(&settings, s.as_ref(), project, batch, from).await?,
            };
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Dlq { action: DlqAction::List { sink, project, count } } => {
            let project = ProjectName::parse(&project)?;
            let redis = RedisHandle::open(&settings.redis.url)?;
            let dlq = DeadLetters::new(&codegraph_shared::names::RedisNames::new(&project), &sink);
            for letter in dlq.list(&mut redis.conn(), count).await.context("read the dead letters")? {
                println!("{}", serde_json::to_string(&letter)?);
            }
            Ok(())
        }
        Command::Dlq { action: DlqAction::Redrive { sink, project, id } } => {
            let redis = RedisHandle::open(&settings.redis.url)?;
            let project = ProjectName::parse(&project)?;
            let report = match open_sink(&settings, &sink)? {
                Named::FalkorDb(s) => redrive(s.as_ref(), &redis, &project, id.as_deref()).await?,
                Named::Memgraph(s) => redrive(s.as_ref(), &redis, &project, id.as_deref()).await?,
            };
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

async fn replay<S: Sink>(
    settings: &Settings,
    sink: &S,
    project: ProjectName,
    batch: usize,
    from: ReplayFrom,
) -> anyhow::Result<stream_consumer::replay::ReplayReport> {
    let redis = RedisHandle::open(&settings.redis.url)?;
    let replay = Replay { sink, redis: &redis, settings: &settings.consumer, project, batch, show_progress: true };
    replay.run(from).await
}

/// A sink chosen by name on the command line.
enum Named {
    FalkorDb(Arc<FalkorDbSink>),
    Memgraph(Arc<MemgraphSink>),
}

/// The named sink, which must have a URL.
fn open_sink(settings: &Settings, name: &str) -> anyhow::Result<Named> {
    let sinks = ActiveSinks::from_settings(settings)?;
    match name {
        FalkorDbSink::NAME => {
            Ok(Named::FalkorDb(sinks.falkordb.context("CODEGRAPH__SINKS__FALKORDB__URL is not set")?))
        }
        MemgraphSink::NAME => {
            Ok(Named::Memgraph(sinks.memgraph.context("CODEGRAPH__SINKS__MEMGRAPH__URL is not set")?))
        }
        other => bail!("unknown sink {other:?} (known: {}, {})", FalkorDbSink::NAME, MemgraphSink::NAME),
    }
}
