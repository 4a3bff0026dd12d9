//! The ws-gateway binary: load settings, check that it may serve as configured, start the fan-out, serve until
//! SIGTERM, drain, exit. `--help` says how to run it.

use std::time::Duration;

use codegraph_shared::{auth, settings, shutdown::Shutdown, telemetry};
use ws_gateway::{access::Access, drain, gateway::Gateway, routes, settings::Settings};

const HELP: &str = "ws-gateway: live graph changes over WebSocket (/ws/events?project=a,b&since=<stream id>)

Usage: ws-gateway [--help]

Example:
  CODEGRAPH__REDIS__URL=redis://127.0.0.1:6379 CODEGRAPH__HTTP__ADDR=127.0.0.1:8001 ws-gateway
  then a WebSocket client on ws://127.0.0.1:8001/ws/events?project=demo receives demo's change sets

Settings: defaults, then config/ws-gateway.toml, then CODEGRAPH__SECTION__KEY (README, Configuration).";

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["--help" | "-h" | "help"] => {
            println!("{HELP}");
            return Ok(std::process::ExitCode::SUCCESS);
        }
        _ => {
            eprintln!("{HELP}");
            return Ok(std::process::ExitCode::from(2));
        }
    }
    let settings: Settings = settings::load("ws-gateway")?;
    let _telemetry = telemetry::init("ws-gateway", &settings.telemetry);
    let access = Access::from_settings(&settings.auth, &settings.gateway)?;
    // Anyone who can reach a gateway without tokens can read every project's live changes.
    auth::require_bind_safety(&settings.http.addr, !access.is_open(), settings.auth.allow_open)
        .map_err(anyhow::Error::msg)?;
    if access.is_open() {
        tracing::warn!(addr = %settings.http.addr, "no token configured: anyone who reaches this gateway may read");
    }
    let shutdown = Shutdown::on_signals();
    let gateway = Gateway::start(&settings, access, shutdown.clone())?;
    let listener = tokio::net::TcpListener::bind(&settings.http.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    // Every frame is written as soon as it is ready (TCP_NODELAY).
    let listener = codegraph_shared::http::without_nagle(listener);
    let app = routes::router(gateway.clone());
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await }).await
    });
    shutdown.wait().await;
    drain::drain(&gateway).await;
    // Upgraded connections are not the HTTP server's; plain requests still in flight get a moment.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(std::process::ExitCode::SUCCESS)
}
