//! The state every handler shares: the Redis handle, the settings, who may do what, the request limits and the
//! metrics.

use std::{ops::Deref, sync::Arc, time::Duration};

use codegraph_shared::{
    auth::{split_tokens, AuthConfigError, Scopes, TokenSet},
    functions::GraphWriter,
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
};
use tokio::sync::Semaphore;

use crate::{metrics::Metrics, settings::Settings};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub redis: RedisHandle,
    pub settings: Settings,
    /// Every configured token with its scopes (`[auth]` lists and files, and the legacy `api.tokens` with all).
    pub tokens: TokenSet,
    /// Browser origins allowed to change state besides a request's own.
    pub allowed_origins: Vec<String>,
    /// One permit per API request in flight (`api.max_concurrent_requests`); `None`: no limit.
    pub in_flight: Option<Arc<Semaphore>>,
    /// `api.request_timeout_ms`; `None`: no limit.
    pub request_timeout: Option<Duration>,
    pub metrics: Metrics,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Fails when a configured token file cannot be read (the service must not start with fewer tokens).
    pub fn new(redis: RedisHandle, settings: Settings) -> Result<Self, AuthConfigError> {
        let mut tokens = settings.auth.token_set()?;
        // Today's deployments keep their meaning: a legacy token may do everything.
        tokens.grant_all(split_tokens(&settings.api.tokens), Scopes::ALL);
        let allowed_origins = settings.auth.allowed_origin_list();
        let in_flight = (settings.api.max_concurrent_requests > 0)
            .then(|| Arc::new(Semaphore::new(settings.api.max_concurrent_requests)));
        let request_timeout =
            (settings.api.request_timeout_ms > 0).then(|| Duration::from_millis(settings.api.request_timeout_ms));
        Ok(Self(Arc::new(Inner {
            redis,
            settings,
            tokens,
            allowed_origins,
            in_flight,
            request_timeout,
            metrics: Metrics::register(),
        })))
    }

    /// The writer of one project's graph and events.
    pub fn writer(&self, project: &ProjectName) -> GraphWriter {
        let redis = &self.settings.redis;
        GraphWriter::new(RedisNames::new(project), redis.stream_max_len, redis.publish_mode())
            .with_replica_ack(redis.min_replicas_ack, redis.min_replicas_timeout_ms)
    }

    pub fn conn(&self) -> codegraph_shared::redis_handle::RedisConn {
        self.redis.conn()
    }
}
