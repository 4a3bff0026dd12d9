//! One sink's consumer group on one project's CDC stream: reading (new entries, or this consumer's pending ones),
//! acknowledging, claiming what other consumers left pending, and the delivery count of an entry.
//!
//! Replies are decoded from raw values, because an entry that was trimmed while pending comes back without fields.

use std::sync::LazyLock;

use redis::{aio::ConnectionLike, RedisError, Script, Value};

pub use codegraph_shared::stream::{Entry, Gap};
use codegraph_shared::{
    event::StreamId,
    names::RedisNames,
    stream::{range_reply, read_reply, stream_info, text, GroupInfo, StreamInfo},
};

/// The consumer group of a sink.
pub fn group_name(sink: &str) -> String {
    format!("sink:{sink}")
}

/// One atomic read of new entries, with the stream's and the group's counters at that moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntries {
    pub entries: Vec<Entry>,
    /// The stream at the moment of the read.
    pub info: StreamInfo,
    /// Entries added to the stream and not yet delivered to the group (`XINFO GROUPS` lag); `None` when Redis
    /// cannot tell.
    pub lag: Option<u64>,
    /// The group's last-delivered ID and read counter before this read (to undo it, see [`GroupStream::unread`]).
    pub delivered_before: StreamId,
    pub entries_read_before: Option<u64>,
}

impl NewEntries {
    /// The gap, if entries were trimmed before the group got them, and the sink does not hold them either
    /// (`floor`: the higher of the last delivered ID and the sink's last applied one).
    pub fn gap(&self, floor: StreamId) -> Option<Gap> {
        self.info.gap_after(floor, self.lag)
    }
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
    /// The sink's lease generation counter: reads that take entries for this consumer first check that its
    /// generation is still the newest.
    pub generation_key: String,
}

/// KEYS: stream, generation counter. ARGV: group, consumer, count, generation. `{XINFO STREAM, XINFO GROUPS,
/// XREADGROUP >}` in one step, or a `FENCED` error when a newer owner took the lease: a paused owner that wakes
/// up must not take new entries into its pending list, where its successor would find them only later, after
/// newer ones, and take them for already applied.
static READ_NEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[4] then
            return redis.error_reply('FENCED generation ' .. ARGV[4] .. ' is no longer the newest of the lease')
          end
          local stream = redis.call('XINFO', 'STREAM', KEYS[1])
          local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
          local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
          return {stream, groups, read}",
    )
});

/// KEYS: stream, generation counter. ARGV: group, consumer, min idle, cursor, generation. One `XAUTOCLAIM …
/// JUSTID` page, or `FENCED` (as [`READ_NEW`]: a stale owner must not take its successor's pending entries).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[2]) ~= ARGV[5] then
            return redis.error_reply('FENCED generation ' .. ARGV[5] .. ' is no longer the newest of the lease')
          end
          return redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', 1000, 'JUSTID')",
    )
});

/// Why Redis refused a read, when it did because the reader's lease generation is no longer the newest.
pub fn fenced(e: &RedisError) -> Option<String> {
    (e.code() == Some("FENCED")).then(|| e.detail().unwrap_or_default().to_owned())
}

impl GroupStream {
    pub fn new(names: &RedisNames, sink: &str, consumer: &str) -> Self {
        Self {
            key: names.cdc_stream(),
            group: group_name(sink),
            consumer: consumer.to_owned(),
            generation_key: names.cdc_owner_generation(sink),
        }
    }

    /// Creates the group (at the start of the stream, so a new sink gets the whole history) unless it exists.
    pub async fn ensure_group<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.key)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            // Nothing read yet: Redis counts the group's lag from here, which is how a trimmed gap shows.
            .arg("ENTRIESREAD")
            .arg(0)
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

    /// New entries (`>`) for the owner of lease `generation`, read in one step with `XINFO STREAM` and `XINFO
    /// GROUPS`, so nothing is trimmed between the counters and the read; a `FENCED` error ([`fenced`]) when
    /// the generation is no longer the newest. Never blocks; see [`GroupStream::wait_for_new`].
    pub async fn read_new<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        count: usize,
        generation: u64,
    ) -> Result<NewEntries, RedisError> {
        let (stream, groups, read): (Value, Value, Value) = READ_NEW
            .key(&self.key)
            .key(&self.generation_key)
            .arg(&self.group)
            .arg(&self.consumer)
            .arg(count)
            .arg(generation)
            .invoke_async(conn)
            .await?;
        let group = self.group_info(groups).unwrap_or_default();
        Ok(NewEntries {
            entries: read_reply(read),
            info: StreamInfo::parse(stream),
            lag: group.lag,
            delivered_before: group.last_delivered,
            entries_read_before: group.entries_read,
        })
    }

    /// Gives back what `read` delivered, as if it had not happened (acknowledged out of the pending list, the
    /// group moved back with its read counter), so a gap found by that read stays visible to the next read.
    pub async fn unread<C: ConnectionLike + Send>(&self, conn: &mut C, read: &NewEntries) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        if !read.entries.is_empty() {
            let ack = pipe.cmd("XACK").arg(&self.key).arg(&self.group);
            for e in &read.entries {
                ack.arg(e.id.to_string());
            }
            ack.ignore();
        }
        let setid =
            pipe.cmd("XGROUP").arg("SETID").arg(&self.key).arg(&self.group).arg(read.delivered_before.to_string());
        if let Some(n) = read.entries_read_before {
            setid.arg("ENTRIESREAD").arg(n);
        }
        setid.ignore();
        pipe.query_async(conn).await
    }

    /// This group in an `XINFO GROUPS` reply.
    fn group_info(&self, groups: Value) -> Option<GroupInfo> {
        GroupInfo::parse_all(groups).into_iter().find(|g| g.name == self.group)
    }

    /// Waits up to `block_ms` for an entry after `after` (`XREAD BLOCK`, which delivers nothing to the group).
    pub async fn wait_for_new<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        after: StreamId,
        block_ms: u64,
    ) -> Result<(), RedisError> {
        redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(after.to_string())
            .query_async::<Value>(conn)
            .await
            .map(|_| ())
    }

    /// The last ID delivered to the group (`XINFO GROUPS`); `0-0` when the group does not exist.
    pub async fn last_delivered<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<StreamId, RedisError> {
        let reply: Value = redis::cmd("XINFO").arg("GROUPS").arg(&self.key).query_async(conn).await?;
        Ok(self.group_info(reply).map(|g| g.last_delivered).unwrap_or_default())
    }

    /// Moves the group's last-delivered ID (`XGROUP SETID`): the next new entries are those after `id`.
    /// `entries_read`: how many entries the stream ever had up to `id`; when unknown it is counted (entries added
    /// minus those after `id`, which must all still be there), so Redis keeps the group's lag, without which every
    /// trimmed stream would look like a gap.
    pub async fn set_delivered<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        id: StreamId,
        entries_read: Option<u64>,
    ) -> Result<(), RedisError> {
        let entries_read = match entries_read {
            Some(n) => n,
            None => {
                let added = stream_info(conn, &self.key).await?.map(|i| i.entries_added).unwrap_or(0);
                added.saturating_sub(self.count_after(conn, id).await?)
            }
        };
        redis::cmd("XGROUP")
            .arg("SETID")
            .arg(&self.key)
            .arg(&self.group)
            .arg(id.to_string())
            .arg("ENTRIESREAD")
            .arg(entries_read)
            .query_async(conn)
            .await
    }

    /// How many entries the stream holds after `id` (read page by page: for the rare moves of a group to an ID
    /// it did not read up to).
    async fn count_after<C: ConnectionLike + Send>(&self, conn: &mut C, id: StreamId) -> Result<u64, RedisError> {
        let (mut after, mut count) = (id, 0);
        loop {
            let reply: Value = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(10_000)
                .query_async(conn)
                .await?;
            let page: Vec<Entry> = range_reply(reply);
            let Some(last) = page.last() else { return Ok(count) };
            after = last.id;
            count += page.len() as u64;
        }
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
    /// Returns how many it claimed; `FENCED` ([`fenced`]) when `generation` is no longer the lease's newest.
    pub async fn claim_idle<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        min_idle_ms: u64,
        generation: u64,
    ) -> Result<usize, RedisError> {
        let mut cursor = "0-0".to_owned();
        let mut claimed = 0;
        loop {
            let reply: Value = CLAIM
                .key(&self.key)
                .key(&self.generation_key)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(min_idle_ms)
                .arg(&cursor)
                .arg(generation)
                .invoke_async(conn)
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

    /// The group's oldest pending entry (`XPENDING` summary), if any.
    pub async fn oldest_pending<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<Option<StreamId>, RedisError> {
        let reply: Value = redis::cmd("XPENDING").arg(&self.key).arg(&self.group).query_async(conn).await?;
        let Value::Array(parts) = reply else { return Ok(None) };
        Ok(parts.get(1).and_then(|v| text(v).parse().ok()))
    }

    /// Acknowledges every entry pending in the group (before the group is moved back for a rebuild, so nothing
    /// pending overtakes the entries before it).
    pub async fn ack_all_pending<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        loop {
            let reply: Value = redis::cmd("XPENDING")
                .arg(&self.key)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(1000)
                .query_async(conn)
                .await?;
            let Value::Array(rows) = reply else { return Ok(()) };
            let ids: Vec<StreamId> = rows
                .iter()
                .filter_map(|row| match row {
                    Value::Array(row) => row.first().and_then(|v| text(v).parse().ok()),
                    _ => None,
                })
                .collect();
            if ids.is_empty() {
                return Ok(());
            }
            self.ack(conn, &ids).await?;
        }
    }

    /// Whether an entry exists after `after` and before `before` (exclusive bounds; `before` inclusive when
    /// `inclusive`).
    pub async fn has_entries_between<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        after: StreamId,
        before: StreamId,
        inclusive: bool,
    ) -> Result<bool, RedisError> {
        if before <= after {
            return Ok(false);
        }
        let end = if inclusive { before.to_string() } else { format!("({before}") };
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(format!("({after}"))
            .arg(end)
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(matches!(reply, Value::Array(entries) if !entries.is_empty()))
    }

    /// Whether the stream lost the entry `id` without trimming it: `id` is newer than anything the stream generated,
    /// or no entry has it although it is not older than the oldest entry left. Redis removes entries only by
    /// trimming, oldest first; a failover that promoted a replica which had not yet received the newest entries
    /// loses them (and the graph changes they carried).
    pub async fn lost_entry<C: ConnectionLike + Send>(&self, conn: &mut C, id: StreamId) -> Result<bool, RedisError> {
        if id == StreamId::ZERO {
            return Ok(false);
        }
        let Some(info) = stream_info(conn, &self.key).await? else { return Ok(true) };
        if id > info.last_generated {
            return Ok(true);
        }
        if info.first.is_none_or(|first| id < first) {
            return Ok(false);
        }
        let reply: Value =
            redis::cmd("XRANGE").arg(&self.key).arg(id.to_string()).arg(id.to_string()).query_async(conn).await?;
        Ok(!matches!(reply, Value::Array(entries) if !entries.is_empty()))
    }

    /// Whether the stream still holds every entry it ever had (nothing trimmed or deleted: as many entries as were
    /// ever added; `max-deleted-entry-id` is no test, Redis 7.0 does not move it when trimming), so a sink can be
    /// rebuilt from it alone.
    pub async fn holds_everything<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool, RedisError> {
        let info = stream_info(conn, &self.key).await?.unwrap_or_default();
        Ok(info.entries_added == info.length)
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

#[cfg(test)]
mod tests {
    use codegraph_shared::{project::ProjectName, testing::RedisServer};

    use super::*;

    #[tokio::test]
    async fn a_stale_generation_takes_no_entry() {
        let redis = RedisServer::start();
        let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let names = RedisNames::new(&ProjectName::parse("fenced").unwrap());
        let (old, new) = (GroupStream::new(&names, "s", "old"), GroupStream::new(&names, "s", "new"));
        old.ensure_group(&mut conn).await.unwrap();
        for _ in 0..3 {
            redis::cmd("XADD")
                .arg(&old.key)
                .arg("*")
                .arg("e")
                .arg("{}")
                .query_async::<String>(&mut conn)
                .await
                .unwrap();
        }
        redis::cmd("SET").arg(&old.generation_key).arg(1).query_async::<()>(&mut conn).await.unwrap();
        assert_eq!(old.read_new(&mut conn, 1, 1).await.unwrap().entries.len(), 1, "generation 1 owns the lease");

        // Generation 2 takes over: the old owner can neither read new entries nor claim the new owner's.
        redis::cmd("SET").arg(&old.generation_key).arg(2).query_async::<()>(&mut conn).await.unwrap();
        let refused = old.read_new(&mut conn, 10, 1).await.unwrap_err();
        assert!(fenced(&refused).is_some(), "{refused}");
        assert_eq!(new.read_new(&mut conn, 1, 2).await.unwrap().entries.len(), 1);
        assert!(fenced(&old.claim_idle(&mut conn, 0, 1).await.unwrap_err()).is_some());
        assert_eq!(new.claim_idle(&mut conn, 0, 2).await.unwrap(), 2, "the new owner takes both pending entries");
        let pending = new.pending_by_consumer(&mut conn).await.unwrap();
        assert_eq!(pending, [("new".to_owned(), 2)], "nothing is pending at the old owner");
        assert_eq!(new.read_new(&mut conn, 10, 2).await.unwrap().entries.len(), 1, "the rest");
    }
}
