//! One sink's consumer group on one project's CDC stream: reading (new entries, or this consumer's pending ones),
//! acknowledging, claiming what other consumers left pending, and the delivery count of an entry.
//!
//! Replies are decoded from raw values, because an entry that was trimmed while pending comes back without fields.

use redis::{aio::ConnectionLike, RedisError, Value};

use codegraph_shared::{
    event::{StreamId, STREAM_FIELD},
    names::RedisNames,
};

/// The consumer group of a sink.
pub fn group_name(sink: &str) -> String {
    format!("sink:{sink}")
}

/// A stream entry as read: its ID and the envelope body (`None` when the entry no longer exists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    pub body: Option<String>,
}

/// Where a read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// This consumer's pending entries after the ID (`0-0`: all of them).
    PendingAfter(StreamId),
    /// Entries never delivered to the group.
    New,
}

/// The group `group` on `names`' CDC stream, read as `consumer`.
#[derive(Clone, Debug)]
pub struct GroupStream {
    pub key: String,
    pub group: String,
    pub consumer: String,
}

impl GroupStream {
    pub fn new(names: &RedisNames, sink: &str, consumer: &str) -> Self {
        Self { key: names.cdc_stream(), group: group_name(sink), consumer: consumer.to_owned() }
    }

    /// Creates the group (at the start of the stream, so a new sink gets the whole history) unless it exists.
    pub async fn ensure_group<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// `XREADGROUP`; `block` only applies to new entries.
    pub async fn read<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        from: ReadFrom,
        count: usize,
        block_ms: u64,
    ) -> Result<Vec<Entry>, RedisError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.consumer).arg("COUNT").arg(count);
        let id = match from {
            ReadFrom::PendingAfter(id) => id.to_string(),
            ReadFrom::New => {
                cmd.arg("BLOCK").arg(block_ms);
                ">".to_owned()
            }
        };
        cmd.arg("STREAMS").arg(&self.key).arg(id);
        let reply: Value = cmd.query_async(conn).await?;
        Ok(read_reply(reply))
    }

    pub async fn ack<C: ConnectionLike + Send>(&self, conn: &mut C, ids: &[StreamId]) -> Result<(), RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.key).arg(&self.group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        cmd.query_async::<i64>(conn).await?;
        Ok(())
    }

    /// Moves to this consumer every entry pending for longer than `min_idle_ms` (`XAUTOCLAIM`, all pages).
    /// Returns how many it claimed.
    pub async fn claim_idle<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        min_idle_ms: u64,
    ) -> Result<usize, RedisError> {
        let mut cursor = "0-0".to_owned();
        let mut claimed = 0;
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.key)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(min_idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(1000)
                .arg("JUSTID")
                .query_async(conn)
                .await?;
            let Value::Array(parts) = reply else { return Ok(claimed) };
            let mut parts = parts.into_iter();
            cursor = parts.next().map(|v| text(&v)).unwrap_or_else(|| "0-0".into());
            if let Some(Value::Array(ids)) = parts.next() {
                claimed += ids.len();
            }
            if cursor == "0-0" {
                return Ok(claimed);
            }
        }
    }

    /// Pending entries per consumer of the group (`XPENDING` summary).
    pub async fn pending_by_consumer<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<(String, u64)>, RedisError> {
        let reply: Value = redis::cmd("XPENDING").arg(&self.key).arg(&self.group).query_async(conn).await?;
        let Value::Array(parts) = reply else { return Ok(Vec::new()) };
        let Some(Value::Array(consumers)) = parts.into_iter().nth(3) else { return Ok(Vec::new()) };
        Ok(consumers
            .into_iter()
            .filter_map(|c| match c {
                Value::Array(pair) if pair.len() == 2 => Some((text(&pair[0]), text(&pair[1]).parse().unwrap_or(0))),
                _ => None,
            })
            .collect())
    }

    /// How many times the entry has been delivered to the group (0 when it is not pending).
    pub async fn deliveries<C: ConnectionLike + Send>(&self, conn: &mut C, id: StreamId) -> Result<u64, RedisError> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.key)
            .arg(&self.group)
            .arg(id.to_string())
            .arg(id.to_string())
            .arg(1)
            .query_async(conn)
            .await?;
        let Value::Array(rows) = reply else { return Ok(0) };
        Ok(match rows.into_iter().next() {
            Some(Value::Array(row)) if row.len() == 4 => text(&row[3]).parse().unwrap_or(0),
            _ => 0,
        })
    }
}

/// `XREVRANGE <key> + - COUNT 1`: the newest entry (a command, so it can join an atomic pipeline).
pub fn newest_entry_cmd(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XREVRANGE");
    cmd.arg(key).arg("+").arg("-").arg("COUNT").arg(1);
    cmd
}

/// The ID in a [`newest_entry_cmd`] reply; `0-0` for an empty stream.
pub fn newest_entry_id(reply: Value) -> StreamId {
    let Value::Array(entries) = reply else { return StreamId::ZERO };
    entries.into_iter().next().and_then(parse_entry).map(|e| e.id).unwrap_or(StreamId::ZERO)
}

fn read_reply(reply: Value) -> Vec<Entry> {
    let Value::Array(streams) = reply else { return Vec::new() };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else { continue };
        let Some(Value::Array(entries)) = pair.pop() else { continue };
        for entry in entries {
            if let Some(e) = parse_entry(entry) {
                out.push(e);
            }
        }
    }
    out
}

/// `[id, [field, value, …]]`, or `[id, nil]` for an entry that was deleted while pending.
pub fn parse_entry(entry: Value) -> Option<Entry> {
    let Value::Array(mut parts) = entry else { return None };
    if parts.len() != 2 {
        return None;
    }
    let fields = parts.pop()?;
    let id = text(&parts[0]).parse().ok()?;
    let body = match fields {
        Value::Array(kv) => {
            let mut it = kv.iter();
            let mut body = None;
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if text(k) == STREAM_FIELD {
                    body = Some(text(v));
                }
            }
            // An entry without the field is not ours to decode: the consumer treats it as a poison event.
            Some(body.unwrap_or_default())
        }
        _ => None,
    };
    Some(Entry { id, body })
}

pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}
