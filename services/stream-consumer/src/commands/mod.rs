//! The command line: the service (default), `replay`, and `dlq list|redrive`. The commands that write to a sink
//! take the project's lease from the running consumer first, with a new generation ([`HeldLease`]), so the sink
//! refuses the consumer's writes from then on; the consumer takes the project back when the command is done.

pub mod redrive;
pub mod replay;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::task::JoinHandle;

use codegraph_shared::{
    names::RedisNames, project::ProjectName, redis_handle::RedisHandle, shutdown::Shutdown, telemetry,
};

use crate::{
    dead_letters::DeadLetters,
    run::{
        app::{self, ActiveSinks},
        lease::{self, Lease},
    },
    settings::{ConsumerSettings, Settings, SERVICE},
    sinks::AnySink,
};
use replay::ReplayFrom;

#[derive(Parser)]
#[command(
    name = "stream-consumer",
    about = "Feeds the projects' CDC streams into graph databases",
    after_help = "Examples:\n  \
      CODEGRAPH__REDIS__URL=redis://127.0.0.1:6379 stream-consumer            run the service (sinks from config/stream-consumer.toml)\n  \
      stream-consumer replay --sink falkordb --project demo --from 0          rebuild one project in one sink\n  \
      stream-consumer dlq list --sink falkordb --project demo                 print its dead letters\n\n\
      Settings: defaults, then config/stream-consumer.toml, then CODEGRAPH__SECTION__KEY (README, Configuration)."
)]
pub struct Cli {
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
        /// Changes per sink commit (whole change sets; a larger set is a commit of its own).
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
        /// Only this dead letter (its own ID or its entry's stream ID).
        #[arg(long)]
        id: Option<String>,
    },
}

/// Runs what the command line asks for.
pub async fn dispatch(cli: Cli, settings: Settings) -> anyhow::Result<()> {
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
            let sink = named_sink(&settings, &sink)?;
            let redis = RedisHandle::from_settings(&settings.redis)?;
            let report = replay::replay(sink.as_ref(), &redis, &settings.consumer, project, batch, from).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Dlq { action: DlqAction::List { sink, project, count } } => {
            let project = ProjectName::parse(&project)?;
            let redis = RedisHandle::from_settings(&settings.redis)?;
            let dlq = DeadLetters::new(&RedisNames::new(&project), &sink);
            for letter in dlq.list(&mut redis.conn(), count).await.context("read the dead letters")? {
                println!("{}", serde_json::to_string(&letter)?);
            }
            Ok(())
        }
        Command::Dlq { action: DlqAction::Redrive { sink, project, id } } => {
            let project = ProjectName::parse(&project)?;
            let sink = named_sink(&settings, &sink)?;
            let redis = RedisHandle::from_settings(&settings.redis)?;
            let report = redrive::redrive(sink.as_ref(), &redis, &settings.consumer, &project, id.as_deref()).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

/// The sink named on the command line, which must have a URL.
fn named_sink(settings: &Settings, name: &str) -> anyhow::Result<Arc<AnySink>> {
    ActiveSinks::from_settings(settings)?.named(name)
}

/// A project's lease taken by a command from whoever held it, renewed until released.
pub struct HeldLease {
    lease: Lease,
    redis: RedisHandle,
    renewer: JoinHandle<()>,
    /// The consumer that held the lease before (still alive if it has not stopped yet).
    pub previous: Option<String>,
}

impl HeldLease {
    /// Takes the lease of `project` for `sink` with a new generation, even from a live consumer: from now on the
    /// sink refuses that consumer's writes (once this generation raised the sink's fence) and its renewals fail.
    pub async fn take_over(
        redis: &RedisHandle,
        settings: &ConsumerSettings,
        sink: &str,
        project: &ProjectName,
    ) -> anyhow::Result<Self> {
        let owner = format!("{}:command", settings.consumer_name());
        let mut lease = lease::for_sink(&RedisNames::new(project), sink, owner, settings.lease_ms);
        let previous = lease.take_over(&mut redis.conn()).await.context("take the project's lease")?;
        let renewer = {
            let (lease, redis, every) = (lease.clone(), redis.clone(), settings.tick());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let _ = lease.renew(&mut redis.conn()).await;
                }
            })
        };
        Ok(Self { lease, redis: redis.clone(), renewer, previous })
    }

    pub fn generation(&self) -> u64 {
        self.lease.generation
    }

    /// Hands the lease back (the consumer takes the project again at its next tick).
    pub async fn release(self) {
        self.renewer.abort();
        let _ = self.lease.release(&mut self.redis.conn()).await;
    }
}
