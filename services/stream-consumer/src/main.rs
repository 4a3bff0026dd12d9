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
    sinks::falkordb::FalkorDbSink,
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
            let sink = open_sink(&settings, &sink)?;
            let redis = RedisHandle::open(&settings.redis.url)?;
            let replay = Replay {
                sink: sink.as_ref(),
                redis: &redis,
                settings: &settings.consumer,
                project: ProjectName::parse(&project)?,
                batch,
                show_progress: true,
            };
            let report = replay.run(from).await?;
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
            let sink = open_sink(&settings, &sink)?;
            let redis = RedisHandle::open(&settings.redis.url)?;
            let report = redrive(sink.as_ref(), &redis, &ProjectName::parse(&project)?, id.as_deref()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// The named sink, which must have a URL.
fn open_sink(settings: &Settings, name: &str) -> anyhow::Result<Arc<FalkorDbSink>> {
    let sinks = ActiveSinks::from_settings(settings)?;
    match name {
        FalkorDbSink::NAME => sinks.falkordb.context("CODEGRAPH__SINKS__FALKORDB__URL is not set"),
        other => bail!("unknown sink {other:?} (known: {})", FalkorDbSink::NAME),
    }
}
