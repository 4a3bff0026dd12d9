//! The ws-gateway binary: load settings, check that it may serve as configured, start the fan-out, serve until
//! SIGTERM, drain, exit.

use std::time::Duration;

use codegraph_shared::{auth, http, settings, shutdown::Shutdown, telemetry};
use ws_gateway::{access::Access, drain, gateway::Gateway, routes, settings::Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    let server = tokio::spawn(http::serve_on(listener, routes::router(gateway.clone()), shutdown.clone()));
    shutdown.wait().await;
    drain::drain(&gateway).await;
    // Upgraded connections are not the HTTP server's; plain requests still in flight get a moment.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}
