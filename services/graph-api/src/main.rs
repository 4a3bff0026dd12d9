//! graph-api binary: load settings, refuse an unsafe configuration, start telemetry, serve until SIGTERM.
//! `graph-api mcp --stdio` serves one MCP session on stdin/stdout instead (an agent launches it), with the same
//! settings and Redis.

use std::{process::ExitCode, time::Duration};

use codegraph_shared::{
    auth::require_bind_safety, functions, http, redis_handle::RedisHandle, settings, shutdown::Shutdown, telemetry,
};
use graph_api::{settings::Settings, state::AppState};

const HELP: &str = "usage: graph-api             serve the HTTP API (and MCP at /mcp)
       graph-api mcp --stdio  serve MCP on stdin/stdout

Examples:
  CODEGRAPH__REDIS__URL=redis://127.0.0.1:6379 CODEGRAPH__HTTP__ADDR=127.0.0.1:8000 graph-api
  curl -s 'http://127.0.0.1:8000/api/graph/stats?project=demo'
  curl -s -X POST 'http://127.0.0.1:8000/api/graph/admin/watch?project=demo' \\
       -H 'content-type: application/json' -d '{\"path\": \"/home/me/src/demo\"}'

Settings: defaults, then config/graph-api.toml, then CODEGRAPH__SECTION__KEY (README, Configuration).";

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdio = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => false,
        ["mcp", "--stdio"] => true,
        ["--help" | "-h" | "help"] => {
            println!("{HELP}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {
            eprintln!("{HELP}");
            return Ok(ExitCode::from(2));
        }
    };
    let settings: Settings = settings::load("graph-api")?;
    // Logs go to stderr, so stdout carries only MCP messages in stdio mode.
    let _telemetry = telemetry::init("graph-api", &settings.telemetry);
    let redis = RedisHandle::from_settings(&settings.redis)?;
    // A configuration error stops the process once with a clear line and a non-zero status (no panic, so a
    // supervisor shows the reason rather than a backtrace in a restart loop).
    let state = match AppState::new(redis.clone(), settings.clone()) {
        Ok(state) => state,
        Err(e) => return Ok(refuse(&e.to_string())),
    };
    if stdio {
        graph_api::mcp::serve_stdio(state).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(reason) = require_bind_safety(&settings.http.addr, !state.tokens.is_empty(), settings.auth.allow_open) {
        return Ok(refuse(&reason));
    }
    if state.tokens.is_empty() {
        tracing::warn!(
            addr = %settings.http.addr,
            "no API token configured: every route is open (set CODEGRAPH__AUTH__*_TOKENS for anything but local use)"
        );
    }
    let shutdown = Shutdown::on_signals();
    let closing = shutdown.clone();
    tokio::spawn(async move {
        closing.wait().await;
        graph_api::mcp::close_http_sessions();
    });
    tokio::spawn(load_functions(redis, shutdown.clone(), state.clone()));
    http::serve(&settings.http.addr, graph_api::app(state), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Logs why the service will not start (and prints it, in case logging goes nowhere) and gives the exit status.
fn refuse(reason: &str) -> ExitCode {
    tracing::error!("{reason}");
    eprintln!("graph-api: {reason}");
    ExitCode::from(2)
}

/// Loads the Function library as soon as Redis answers (then sweeps what resets left behind); until then `/ready`
/// says 503. (Calls reload it too, if
/// Redis loses it later.)
async fn load_functions(redis: RedisHandle, shutdown: Shutdown, state: AppState) {
    let mut delay = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        match functions::ensure_loaded(&mut redis.conn()).await {
            Ok(()) => {
                // Finishes the sweeps of old graph generations that a stopped graph-api left half done.
                tokio::spawn(graph_api::routes::admin::sweep_every_project(state));
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot load the Function library yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
