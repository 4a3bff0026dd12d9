//! Trimming a CDC stream below what every consumer group has acknowledged, and never inside the retention window.
//!
//! A group still needs every entry at or above its oldest pending entry, and every entry it has not been
//! delivered yet (above its `last-delivered-id`). The stream is trimmed (`XTRIM MINID ~`, so Redis drops whole
//! nodes only) below the smallest of those over all groups, and below `now - retention`, whichever is lower.
//! A stream without groups is left alone.

use redis::{aio::ConnectionLike, RedisError, Value};

use codegraph_shared::event::StreamId;

use crate::stream::{field, fields, text};

/// What one group still needs: entries at or above this ID.
pub async fn group_floors<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Vec<StreamId>, RedisError> {
    let reply: Value = match redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(conn).await {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such key") => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let Value::Array(groups) = reply else { return Ok(Vec::new()) };
    let mut floors = Vec::new();
    for group in groups {
        let fields = fields(group);
        let field = |name: &str| field(&fields, name).map(text);
        let (Some(name), Some(delivered)) = (field("name"), field("last-delivered-id")) else { continue };
        let delivered: StreamId = delivered.parse().unwrap_or(StreamId::ZERO);
        let pending: u64 = field("pending").and_then(|p| p.parse().ok()).unwrap_or(0);
        let floor = if pending > 0 {
            let summary: Value = redis::cmd("XPENDING").arg(key).arg(&name).query_async(conn).await?;
            match summary {
                Value::Array(parts) => parts.get(1).and_then(|v| text(v).parse().ok()).unwrap_or(StreamId::ZERO),
                _ => StreamId::ZERO,
            }
        } else {
            delivered.successor()
        };
        floors.push(floor);
    }
    Ok(floors)
}

/// The ID below which the stream may go: `None` when nothing may be trimmed.
pub fn trim_point(floors: &[StreamId], now_ms: u64, retention_ms: u64) -> Option<StreamId> {
    let acknowledged = floors.iter().min()?;
    let retained = StreamId::new(now_ms.saturating_sub(retention_ms), 0);
    let point = (*acknowledged).min(retained);
    (point > StreamId::ZERO).then_some(point)
}

/// Trims `key` as far as the groups and the retention allow. Returns how many entries Redis removed.
pub async fn trim<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    now_ms: u64,
    retention_ms: u64,
) -> Result<u64, RedisError> {
    let floors = group_floors(conn, key).await?;
    let Some(point) = trim_point(&floors, now_ms, retention_ms) else { return Ok(0) };
    redis::cmd("XTRIM").arg(key).arg("MINID").arg("~").arg(point.to_string()).query_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_group_and_the_retention_bound_the_trim() {
        let floors = [StreamId::new(500, 2), StreamId::new(900, 0)];
        assert_eq!(trim_point(&floors, 10_000, 1_000), Some(StreamId::new(500, 2)));
        assert_eq!(trim_point(&floors, 1_000, 800), Some(StreamId::new(200, 0)));
        assert_eq!(trim_point(&floors, 1_000, 5_000), None, "everything is inside the retention");
        assert_eq!(trim_point(&[], 10_000, 0), None, "no group: no trim");
    }
}
