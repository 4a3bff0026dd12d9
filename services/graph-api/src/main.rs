//! graph-api binary: load settings, start telemetry, serve until SIGTERM.

use std::time::Duration;

use codegraph_shared::{functions, http, redis_handle::RedisHandle, settings, shutdown::Shutdown, telemetry};
use graph_api::{settings::Settings, state::AppState};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = settings::load("graph-api")?;
    let _telemetry = telemetry::init("graph-api", &settings.telemetry);
    let redis = RedisHandle::open(&settings.redis.url)?;
    let state = AppState::new(redis.clone(), settings.clone());
    if state.tokens.is_empty() {
        tracing::warn!("no API tokens configured: mutations and admin routes are open (fine for local use only)");
    }
    let shutdown = Shutdown::on_signals();
    tokio::spawn(load_functions(redis, shutdown.clone()));
    http::serve(&settings.http.addr, graph_api::app(state), shutdown).await?;
    Ok(())
}

/// Loads the Function library as soon as Redis answers; until then `/ready` says 503. (Calls reload it too, if
/// Redis loses it later.)
async fn load_functions(redis: RedisHandle, shutdown: Shutdown) {
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        match functions::ensure_loaded(&mut redis.conn()).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "cannot load the Function library yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
