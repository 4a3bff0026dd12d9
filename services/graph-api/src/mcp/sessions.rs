//! MCP sessions (protocol versions with the `initialize` handshake) shared by every graph-api replica: rmcp
//! keeps a session in the process that created it, and a request of it that a load balancer sends to another
//! replica would be answered 404. With this store rmcp records the session's `initialize` parameters in Redis,
//! and a replica that does not know a session restores it from there (a new session object, same id).
//!
//! What does not move: the notification stream (GET) and `resources/subscribe` live in the replica that served
//! them, so a subscription's notifications reach the client only when its GET stream is on the same replica
//! (client affinity, or the 2026-07-28 protocol's `subscriptions/listen`, one request).

use rmcp::transport::streamable_http_server::session::store::{SessionState, SessionStore, SessionStoreError};

use codegraph_shared::{http::ApiError, redis_handle::RedisHandle};

/// A session unused this long is forgotten (rmcp closes an idle session after 5 minutes anyway; the record
/// outlives it so a client that comes back after a replica restart is restored).
const SESSION_TTL_SECS: u64 = 24 * 3600;
/// Longest session id accepted as a key (rmcp's are UUIDs); a longer one is unknown.
const MAX_SESSION_ID_LEN: usize = 64;

/// The session records' key. (Outside any project, like the job index; see DESIGN.md, "Redis key layout".)
fn key(session_id: &str) -> Option<String> {
    let valid = !session_id.is_empty()
        && session_id.len() <= MAX_SESSION_ID_LEN
        && session_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| codegraph_shared::names::mcp_session(session_id))
}

/// Redis errors reach rmcp as an [`ApiError`], whose text (rmcp sends it to the client in a 500) never holds
/// Redis's own words; the service log has them, under the same error id.
pub struct RedisSessionStore {
    redis: RedisHandle,
}

impl RedisSessionStore {
    pub fn new(redis: RedisHandle) -> Self {
        Self { redis }
    }
}

#[async_trait::async_trait]
impl SessionStore for RedisSessionStore {
    /// The session's record, its time to live renewed.
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let Some(key) = key(session_id) else { return Ok(None) };
        let record: Option<String> = redis::cmd("GETEX")
            .arg(&key)
            .arg("EX")
            .arg(SESSION_TTL_SECS)
            .query_async(&mut self.redis.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(record.map(|json| serde_json::from_str(&json)).transpose()?)
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let Some(key) = key(session_id) else { return Ok(()) };
        let json = serde_json::to_string(state)?;
        redis::cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("EX")
            .arg(SESSION_TTL_SECS)
            .query_async::<()>(&mut self.redis.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        let Some(key) = key(session_id) else { return Ok(()) };
        redis::cmd("DEL").arg(&key).query_async::<()>(&mut self.redis.conn()).await.map_err(ApiError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn only_plain_ids_become_keys() {
        assert_eq!(key("0f3a-9b").as_deref(), Some("code_graph:mcp:session:0f3a-9b"));
        for bad in ["", "a:b", "a b", "{x}", &"a".repeat(65)] {
            assert!(key(bad).is_none(), "{bad:?}");
        }
    }
}
