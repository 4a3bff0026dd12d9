//! The state every handler shares: the Redis handle, the settings and the metrics.

use std::{ops::Deref, sync::Arc};

use codegraph_shared::{functions::GraphWriter, names::RedisNames, project::ProjectName, redis_handle::RedisHandle};

use crate::{metrics::Metrics, settings::Settings};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub redis: RedisHandle,
    pub settings: Settings,
    pub tokens: Vec<String>,
    pub metrics: Metrics,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(redis: RedisHandle, settings: Settings) -> Self {
        let tokens = settings.api.token_list();
        Self(Arc::new(Inner { redis, settings, tokens, metrics: Metrics::register() }))
    }

    /// The writer of one project's graph and events.
    pub fn writer(&self, project: &ProjectName) -> GraphWriter {
        GraphWriter::new(RedisNames::new(project), self.settings.redis.stream_max_len, self.settings.redis.publish)
    }

    pub fn conn(&self) -> redis::aio::ConnectionManager {
        self.redis.conn()
    }
}
