//! The running service: the sinks that have a URL, one ownership loop per sink, and the HTTP endpoints.

use std::sync::Arc;

use anyhow::Context;
use codegraph_shared::{redis_handle::RedisHandle, shutdown::Shutdown};
use tracing::info;

use crate::{
    http,
    ownership::run_sink,
    settings::Settings,
    sinks::{falkordb::FalkorDbSink, memgraph::MemgraphSink, Sink},
    status::StatusBoard,
    worker::SinkContext,
};

/// The sinks switched on by their URL.
#[derive(Default)]
pub struct ActiveSinks {
    pub falkordb: Option<Arc<FalkorDbSink>>,
    pub memgraph: Option<Arc<MemgraphSink>>,
}

impl ActiveSinks {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let mut sinks = Self::default();
        if settings.sinks.falkordb.enabled() {
            sinks.falkordb = Some(Arc::new(FalkorDbSink::new(&settings.sinks.falkordb)?));
        }
        if settings.sinks.memgraph.enabled() {
            sinks.memgraph = Some(Arc::new(MemgraphSink::new(&settings.sinks.memgraph)?));
        }
        Ok(sinks)
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.falkordb.is_some() {
            names.push(FalkorDbSink::NAME);
        }
        if self.memgraph.is_some() {
            names.push(MemgraphSink::NAME);
        }
        names
    }

    /// Whether each sink's backend answers.
    pub async fn ping(&self) -> Vec<(&'static str, bool)> {
        let mut out = Vec::new();
        if let Some(s) = &self.falkordb {
            out.push((s.name(), s.ping().await));
        }
        if let Some(s) = &self.memgraph {
            out.push((s.name(), s.ping().await));
        }
        out
    }
}

/// Runs the service until `shutdown`.
pub async fn run(settings: Settings, shutdown: Shutdown) -> anyhow::Result<()> {
    let redis = RedisHandle::open(&settings.redis.url).context("redis url")?;
    let sinks = Arc::new(ActiveSinks::from_settings(&settings)?);
    let consumer = settings.consumer.consumer_name();
    let board = StatusBoard::default();
    if sinks.names().is_empty() {
        info!("no sink has a URL (CODEGRAPH__SINKS__FALKORDB__URL, CODEGRAPH__SINKS__MEMGRAPH__URL): nothing to feed");
    }
    let mut tasks = Vec::new();
    if let Some(sink) = &sinks.falkordb {
        tasks.push(tokio::spawn(run_sink(context(sink, &redis, &settings, &consumer, &board), shutdown.clone())));
    }
    if let Some(sink) = &sinks.memgraph {
        tasks.push(tokio::spawn(run_sink(context(sink, &redis, &settings, &consumer, &board), shutdown.clone())));
    }
    let state = http::AppState { redis, sinks, board, consumer };
    http::serve(&settings.http.addr, state, shutdown.clone()).await.context("http server")?;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

fn context<S: Sink>(
    sink: &Arc<S>,
    redis: &RedisHandle,
    settings: &Settings,
    consumer: &str,
    board: &StatusBoard,
) -> Arc<SinkContext<S>> {
    board.add_sink(sink.name());
    Arc::new(SinkContext {
        sink: sink.clone(),
        redis: redis.clone(),
        settings: settings.consumer.clone(),
        consumer: consumer.to_owned(),
        board: board.clone(),
    })
}
