//! Reading a project's CDC stream: pages of entries after an id, and whether the stream still holds everything
//! after that id.
//!
//! Each page is read together with `XINFO STREAM` in one MULTI/EXEC, so the retention check and the entries it
//! vouches for describe the same moment: an id older than the stream's first entry, once anything was trimmed,
//! means events may be gone and the reader must resync; an id newer than anything the stream ever generated
//! belongs to another stream (Redis lost its data) and must resync too. Nothing is ever skipped silently.

use codegraph_shared::{
    event::{StreamId, STREAM_FIELD},
    names::RedisNames,
};
use redis::{aio::ConnectionLike, RedisError, Value};

use crate::gateway_event::GatewayEvent;

/// What `XINFO STREAM` says about retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamInfo {
    pub length: u64,
    /// Entries ever added (Redis 7); `length` below it means entries were trimmed.
    pub entries_added: u64,
    pub first: Option<StreamId>,
    pub last_generated: StreamId,
}

/// Whether the stream holds every entry after an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Complete,
    /// Entries after the id may have been trimmed; `oldest` is the oldest one left.
    Trimmed {
        oldest: Option<StreamId>,
    },
    /// The id is newer than anything this stream generated.
    Unknown {
        last: StreamId,
    },
}

impl Retention {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Trimmed { .. } => "the stream no longer holds the events after this id",
            Self::Unknown { .. } => "this id is newer than anything the stream holds",
        }
    }

    pub fn oldest(&self) -> Option<StreamId> {
        match self {
            Self::Trimmed { oldest } => *oldest,
            _ => None,
        }
    }
}

impl StreamInfo {
    pub fn retention_after(&self, after: StreamId) -> Retention {
        if after > self.last_generated {
            return Retention::Unknown { last: self.last_generated };
        }
        // Without `entries-added` (Redis before 7) nothing says whether entries were trimmed: assume they were.
        let trimmed = self.entries_added > self.length || (self.entries_added == 0 && self.length > 0);
        match self.first {
            _ if !trimmed => Retention::Complete,
            Some(first) if after >= first => Retention::Complete,
            first => Retention::Trimmed { oldest: first },
        }
    }
}

/// One read: the stream's state and up to `count` events after the id.
#[derive(Debug, Default)]
pub struct Page {
    pub info: StreamInfo,
    /// `(id, event)`; an entry that is not a valid envelope comes as `Err` so the reader can skip past it.
    pub entries: Vec<(StreamId, Result<GatewayEvent, String>)>,
}

/// Reads up to `count` entries after `after` (exclusive) together with the stream's info. A stream that does not
/// exist reads as empty, with nothing generated.
pub async fn read_after<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    after: StreamId,
    count: usize,
) -> Result<Page, RedisError> {
    let key = names.cdc_stream();
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(conn).await?;
    if !exists {
        return Ok(Page::default());
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("XINFO")
        .arg("STREAM")
        .arg(&key)
        .cmd("XRANGE")
        .arg(&key)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count);
    let (info, range): (Value, Value) = match pipe.query_async(conn).await {
        Ok(v) => v,
        // Deleted between EXISTS and MULTI: as empty.
        Err(e) if e.to_string().contains("no such key") => return Ok(Page::default()),
        Err(e) => return Err(e),
    };
    Ok(Page { info: parse_info(&info), entries: parse_range(range) })
}

/// The stream's last generated id now (ZERO when it does not exist): where a gateway starts following a project.
pub async fn last_generated<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
) -> Result<StreamId, RedisError> {
    let info: Result<Value, RedisError> =
        redis::cmd("XINFO").arg("STREAM").arg(names.cdc_stream()).query_async(conn).await;
    match info {
        Ok(v) => Ok(parse_info(&v).last_generated),
        Err(e) if e.to_string().contains("no such key") => Ok(StreamId::ZERO),
        Err(e) => Err(e),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// `XINFO STREAM` replies as a flat key/value array (RESP2) or a map (RESP3).
fn parse_info(v: &Value) -> StreamInfo {
    let pairs: Vec<(&Value, &Value)> = match v {
        Value::Array(items) => items.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
        Value::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    let mut info = StreamInfo::default();
    let mut recorded_first = None;
    for (k, v) in pairs {
        match text(k).as_deref() {
            Some("length") => info.length = number(v).unwrap_or(0),
            Some("entries-added") => info.entries_added = number(v).unwrap_or(0),
            Some("last-generated-id") => info.last_generated = text(v).and_then(|s| s.parse().ok()).unwrap_or_default(),
            Some("recorded-first-entry-id") => recorded_first = text(v).and_then(|s| s.parse().ok()),
            Some("first-entry") => {
                if let Value::Array(entry) = v {
                    info.first = entry.first().and_then(text).and_then(|s| s.parse().ok());
                }
            }
            _ => {}
        }
    }
    if info.length == 0 {
        info.first = None;
    } else if info.first.is_none() {
        info.first = recorded_first;
    }
    info
}

fn parse_range(v: Value) -> Vec<(StreamId, Result<GatewayEvent, String>)> {
    let Value::Array(entries) = v else { return Vec::new() };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else { return None };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id_text = text(&parts[0])?;
            let id: StreamId = id_text.parse().ok()?;
            let body = match fields {
                Value::Array(kv) => {
                    kv.chunks_exact(2).find(|c| text(&c[0]).as_deref() == Some(STREAM_FIELD)).and_then(|c| text(&c[1]))
                }
                Value::Map(kv) => {
                    kv.iter().find(|(k, _)| text(k).as_deref() == Some(STREAM_FIELD)).and_then(|(_, v)| text(v))
                }
                _ => None,
            };
            let event = match body {
                Some(body) => GatewayEvent::from_stream_entry(&id_text, &body).map_err(|e| e.to_string()),
                None => Err(format!("entry {id_text} has no field {STREAM_FIELD:?}")),
            };
            Some((id, event))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(length: u64, added: u64, first: Option<(u64, u64)>, last: (u64, u64)) -> StreamInfo {
        StreamInfo {
            length,
            entries_added: added,
            first: first.map(|(m, s)| StreamId::new(m, s)),
            last_generated: StreamId::new(last.0, last.1),
        }
    }

    #[test]
    fn nothing_trimmed_means_every_older_id_is_fine() {
        let i = info(10, 10, Some((5, 0)), (20, 0));
        assert_eq!(i.retention_after(StreamId::ZERO), Retention::Complete);
        assert_eq!(i.retention_after(StreamId::new(20, 0)), Retention::Complete);
    }

    #[test]
    fn trimmed_streams_refuse_ids_before_their_first_entry() {
        let i = info(10, 500, Some((5, 0)), (20, 0));
        assert_eq!(i.retention_after(StreamId::new(5, 0)), Retention::Complete);
        assert_eq!(i.retention_after(StreamId::new(4, 9)), Retention::Trimmed { oldest: Some(StreamId::new(5, 0)) });
        assert_eq!(i.retention_after(StreamId::ZERO), Retention::Trimmed { oldest: Some(StreamId::new(5, 0)) });
    }

    #[test]
    fn ids_from_the_future_are_unknown() {
        let i = info(0, 0, None, (0, 0));
        assert_eq!(i.retention_after(StreamId::ZERO), Retention::Complete);
        assert_eq!(i.retention_after(StreamId::new(1, 0)), Retention::Unknown { last: StreamId::ZERO });
    }
}
