//! The gateway process's shared state: settings, the fan-out hub, the replayer, the client registry, the
//! counters, the connection limit and the shutdown signal. Handlers and sessions hold it behind an `Arc`.

use std::sync::Arc;

use codegraph_shared::{redis_handle::RedisHandle, shutdown::Shutdown};
use tokio::sync::Semaphore;

use crate::{
    access::Access,
    budget::MemoryBudget,
    catch_up::Replayer,
    fanout::Hub,
    registry::Registry,
    settings::{GatewaySettings, Settings},
    status::Stats,
    writer::KeepAlive,
};

pub struct Gateway {
    pub settings: GatewaySettings,
    pub hub: Hub,
    pub replayer: Replayer,
    pub registry: Arc<Registry>,
    pub stats: Arc<Stats>,
    /// Bytes waiting for all clients together.
    pub budget: Arc<MemoryBudget>,
    pub access: Access,
    /// One permit per open WebSocket connection.
    pub connections: Arc<Semaphore>,
    pub shutdown: Shutdown,
}

impl Gateway {
    /// Starts the fan-out (which connects to Redis by itself, in the background) and the status sampler.
    pub fn start(settings: &Settings, access: Access, shutdown: Shutdown) -> Result<Arc<Self>, redis::RedisError> {
        let redis = RedisHandle::from_settings(&settings.redis)?;
        let g = &settings.gateway;
        let stats = Arc::new(Stats::default());
        let hub = Hub::start(redis.clone(), g.replay_page, g.redis_ping_interval(), stats.clone());
        let registry = Arc::new(Registry::default());
        let budget = Arc::new(MemoryBudget::new(g.total_outbox_max_bytes, Arc::downgrade(&registry), stats.clone()));
        let gateway = Arc::new(Self {
            settings: g.clone(),
            replayer: Replayer { redis, hub: hub.clone(), page: g.replay_page.max(1) },
            hub,
            registry,
            stats: stats.clone(),
            budget: budget.clone(),
            access,
            connections: Arc::new(Semaphore::new(g.max_connections)),
            shutdown,
        });
        let interval = g.status_interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                stats.sample_rates();
                stats.set_budget(budget.used(), budget.limit());
            }
        });
        Ok(gateway)
    }

    /// The status document (`GET /status`, `/ws/status`), with the budget as it is now.
    pub fn status(&self) -> serde_json::Value {
        self.stats.set_budget(self.budget.used(), self.budget.limit());
        self.stats.status(&self.registry)
    }

    pub fn keepalive(&self) -> KeepAlive {
        KeepAlive { ping_every: self.settings.ping_interval(), pong_timeout: self.settings.pong_timeout() }
    }
}
