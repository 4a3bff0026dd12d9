//! A Redis handle that never blocks start-up: it connects on first use and reconnects by itself.
//!
//! A service starts (and answers `/health`) while Redis is down; requests then fail fast with an error that
//! [`crate::functions::is_unavailable`] recognises (→ 503), and succeed again once Redis is back.

use std::time::Duration;

use redis::{aio::ConnectionManager, aio::ConnectionManagerConfig, Client, RedisError};

#[derive(Clone)]
pub struct RedisHandle {
    client: Client,
    manager: ConnectionManager,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHandle").field("addr", &self.client.get_connection_info().addr()).finish()
    }
}

impl RedisHandle {
    /// Prepares the handle without connecting. Fails only for a malformed URL. Must run inside a Tokio runtime.
    pub fn open(url: &str) -> Result<Self, RedisError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { client, manager })
    }

    /// The shared multiplexed connection (cheap to clone; requests pipeline over one socket).
    pub fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// The client, for dedicated connections (Pub/Sub, blocking reads).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A dedicated connection for blocking reads (`XREAD`/`XREADGROUP … BLOCK`), so they never delay the shared
    /// one. Its response timeout is the block time plus a margin: the default one is shorter than a block and
    /// would end every idle read with a time-out.
    pub async fn blocking_connection(&self, block: Duration) -> Result<redis::aio::MultiplexedConnection, RedisError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(block + Duration::from_secs(5)));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// `PING`: true when Redis answers.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
    }
}
