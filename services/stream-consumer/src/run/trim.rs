//! Trimming a CDC stream below what every consumer group still needs, and never inside the retention window;
//! and watching the writers' length cap, which a lagging group can hold off.
//!
//! Both rules live in the Function library (`cg_trim`, and the cap inside every write), which reads the groups
//! and trims in one atomic step: a group created in between cannot be trimmed past. This module only decides the
//! retention floor and reports what the library recorded.

use redis::{aio::ConnectionLike, RedisError};

use codegraph_shared::{event::StreamId, functions::trim_stream, names::RedisNames};

/// Trims the project's stream as far as the groups and the retention allow. Returns how many entries Redis
/// removed.
pub async fn trim<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    now_ms: u64,
    retention_ms: u64,
) -> Result<u64, RedisError> {
    trim_stream(conn, names, retention_floor(now_ms, retention_ms)).await
}

/// The oldest ID the retention keeps: entries below it may go.
pub fn retention_floor(now_ms: u64, retention_ms: u64) -> StreamId {
    StreamId::new(now_ms.saturating_sub(retention_ms), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retention_floor_is_now_minus_the_retention() {
        assert_eq!(retention_floor(10_000, 1_000), StreamId::new(9_000, 0));
        assert_eq!(retention_floor(1_000, 5_000), StreamId::ZERO, "everything is inside the retention");
    }
}
