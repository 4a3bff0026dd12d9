//! The running service: the sinks that have a URL, one ownership loop per sink, and the HTTP endpoints.

use std::sync::Arc;

use anyhow::{bail, Context};
use codegraph_shared::{redis_handle::RedisHandle, shutdown::Shutdown};
use tracing::info;

use crate::{
    run::{http, ownership::run_sink, status::StatusBoard, worker::SinkContext},
    settings::Settings,
    sinks::{AnySink, Sink, SINK_NAMES},
};

/// The sinks switched on by their URL.
#[derive(Default)]
pub struct ActiveSinks {
    pub sinks: Vec<Arc<AnySink>>,
}

impl ActiveSinks {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self { sinks: AnySink::enabled(&settings.sinks)?.into_iter().map(Arc::new).collect() })
    }

    /// The sink called `name`, which must be registered and have a URL (for the commands).
    pub fn named(&self, name: &str) -> anyhow::Result<Arc<AnySink>> {
        if !SINK_NAMES.contains(&name) {
            bail!("unknown sink {name:?} (known: {})", SINK_NAMES.join(", "));
        }
        let url = format!("CODEGRAPH__SINKS__{}__URL", name.to_uppercase());
        self.sinks.iter().find(|s| s.name() == name).cloned().with_context(|| format!("{url} is not set"))
    }

    /// Whether each sink's backend answers.
    pub async fn ping(&self) -> Vec<(&'static str, bool)> {
        let mut out = Vec::new();
        for s in &self.sinks {
            out.push((s.name(), s.ping().await));
        }
        out
    }
}

/// Runs the service until `shutdown`.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let redis = RedisHandle::from_settings(&settings.redis).context("redis url")?;
    let sinks = Arc::new(ActiveSinks::from_settings(&settings)?);
    let consumer = settings.consumer.consumer_name();
    let board = StatusBoard::default();
    if sinks.sinks.is_empty() {
        info!(known = ?SINK_NAMES, "no sink has a URL (CODEGRAPH__SINKS__<NAME>__URL): nothing to feed");
    }
    let mut tasks = Vec::new();
    for sink in &sinks.sinks {
        board.add_sink(sink.name());
        let ctx = Arc::new(SinkContext {
            sink: sink.clone(),
            redis: redis.clone(),
            settings: settings.consumer.clone(),
            consumer: consumer.clone(),
            board: board.clone(),
        });
        tasks.push(tokio::spawn(run_sink(ctx, shutdown.clone())));
    }
    let state = http::AppState { redis, sinks, board, consumer };
    http::serve(&settings.http.addr, state, shutdown.clone()).await.context("http server")?;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
