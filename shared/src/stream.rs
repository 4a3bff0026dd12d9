//! Reading Redis streams, the CDC streams above all: entries out of every reply shape, what `XINFO` says about a
//! stream and its consumer groups, whether the stream still holds everything after an ID, and the clock stream
//! IDs are made of.
//!
//! Replies are decoded from raw values (RESP2 arrays and RESP3 maps alike), because an entry deleted while it
//! was pending in a group comes back as `[id, nil]`, which the typed replies of the `redis` crate refuse.
//!
//! Retention rests on one fact of this project: streams are only trimmed from the front (`XTRIM`, by the
//! consumers and the writers' length cap), so what is gone lies before the first entry left. Whether any of it
//! came after a reader's position is a count Redis keeps only for consumer groups (`lag`), and
//! `max-deleted-entry-id` only records `XDEL`, not trimming; where neither answers, [`StreamInfo::gap_after`] assumes the worst (a resync, never a silent loss).

use std::time::{SystemTime, UNIX_EPOCH};

use redis::{aio::ConnectionLike, RedisError, Value};

use crate::event::{StreamId, STREAM_FIELD};

/// Milliseconds since the Unix epoch: the clock the first half of a stream ID counts.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether Redis refused a command because its key does not exist (`XINFO` on a stream never written), also
/// when the command ran inside a pipeline or `MULTI`.
pub fn is_missing_key(e: &RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, e)| e.details() == Some("no such key")))
}

/// A CDC stream entry as read: its ID and the envelope body ([`STREAM_FIELD`]), `None` when the entry was deleted
/// (trimmed) while pending. An entry without the field has an empty body, which no envelope decoding accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    pub body: Option<String>,
}

/// An entry of any stream with all its fields (the jobs stream, dead letters); `fields` is `None` when the entry
/// was deleted while pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEntry {
    pub id: StreamId,
    pub fields: Option<Vec<(String, String)>>,
}

impl RawEntry {
    /// The value of a field (the first one of that name).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.as_ref()?.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl From<RawEntry> for Entry {
    fn from(raw: RawEntry) -> Self {
        let body = raw.fields.is_some().then(|| raw.field(STREAM_FIELD).unwrap_or_default().to_owned());
        Entry { id: raw.id, body }
    }
}

/// One entry, `[id, [field, value, …]]` (or `[id, nil]` for an entry deleted while pending); `None` when the
/// value is not an entry.
pub fn parse_entry<T: From<RawEntry>>(entry: Value) -> Option<T> {
    let Value::Array(mut parts) = entry else { return None };
    if parts.len() != 2 {
        return None;
    }
    let values = parts.pop()?;
    let id = text(&parts[0]).parse().ok()?;
    let fields = match values {
        Value::Nil => None,
        values => Some(fields(values).into_iter().map(|(k, v)| (k, text(&v))).collect()),
    };
    Some(RawEntry { id, fields }.into())
}

/// The entries of an `XRANGE` / `XREVRANGE` reply (also the second element of `XAUTOCLAIM`'s).
pub fn range_reply<T: From<RawEntry>>(reply: Value) -> Vec<T> {
    let Value::Array(entries) = reply else { return Vec::new() };
    entries.into_iter().filter_map(parse_entry).collect()
}

/// The entries of an `XREAD` / `XREADGROUP` reply, over all its streams: `[[key, entries], …]` in RESP2,
/// `{key: entries}` in RESP3, nil when a blocking read timed out.
pub fn read_reply<T: From<RawEntry>>(reply: Value) -> Vec<T> {
    let per_stream: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    per_stream.into_iter().flat_map(range_reply).collect()
}

/// An `XAUTOCLAIM` reply (without `JUSTID`): the cursor to continue from (`0-0` when done) and the claimed entries.
/// Entries deleted while pending are not among them (Redis 7 lists their IDs apart and drops them from the group).
pub fn autoclaim_reply<T: From<RawEntry>>(reply: Value) -> (StreamId, Vec<T>) {
    let Value::Array(parts) = reply else { return (StreamId::ZERO, Vec::new()) };
    let mut parts = parts.into_iter();
    let cursor = parts.next().and_then(|c| text(&c).parse().ok()).unwrap_or(StreamId::ZERO);
    (cursor, parts.next().map(range_reply).unwrap_or_default())
}

/// `XREVRANGE <key> + - COUNT 1`: the newest entry (a command, so it can join an atomic pipeline).
pub fn newest_entry_cmd(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("XREVRANGE");
    cmd.arg(key).arg("+").arg("-").arg("COUNT").arg(1);
    cmd
}

/// The ID in a [`newest_entry_cmd`] reply; `None` for an empty or missing stream.
pub fn newest_entry_id(reply: Value) -> Option<StreamId> {
    range_reply::<RawEntry>(reply).into_iter().next().map(|e| e.id)
}

/// What `XINFO STREAM` says about a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// Entries the stream holds.
    pub length: u64,
    /// The oldest entry left; `None` when the stream is empty.
    pub first: Option<StreamId>,
    /// The newest ID the stream ever generated, even if that entry is gone.
    pub last_generated: StreamId,
    /// The newest ID Redis deleted or trimmed (`0-0`: none ever was).
    pub max_deleted: StreamId,
    /// Entries ever added.
    pub entries_added: u64,
}

/// Entries after `after` are gone: some of those between `after` and `before` (exclusive) were deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub after: StreamId,
    pub before: StreamId,
}

/// Whether the stream holds every entry after an ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Complete,
    /// Entries after the ID were trimmed; `oldest` is the oldest one left.
    Trimmed {
        oldest: Option<StreamId>,
    },
    /// The ID is newer than anything this stream generated (Redis lost its data, or the ID is from elsewhere).
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
    /// Decodes an `XINFO STREAM` reply.
    pub fn parse(reply: Value) -> Self {
        let info = fields(reply);
        let id = |name: &str| field(&info, name).and_then(|v| text(v).parse().ok());
        let number = |name: &str| field(&info, name).and_then(|v| text(v).parse().ok());
        let length = number("length").unwrap_or(0);
        let first = match field(&info, "first-entry") {
            Some(entry) if length > 0 => parse_entry::<RawEntry>(entry.clone()).map(|e| e.id),
            _ => None,
        };
        StreamInfo {
            length,
            first,
            last_generated: id("last-generated-id").unwrap_or_default(),
            max_deleted: id("max-deleted-entry-id").unwrap_or_default(),
            entries_added: number("entries-added").unwrap_or(0),
        }
    }

    /// The entries after `floor` that the stream no longer holds, if any. Nothing is missing when the first
    /// entry left follows `floor` directly. Otherwise entries are gone when Redis deleted one above `floor`
    /// (`XDEL`), or when trimming removed some of them: `lag` (a consumer group's count of undelivered entries,
    /// its position being `floor` or below) says so when it exceeds what the stream holds; without a count
    /// (`None`: no group, or Redis cannot tell) any trimming at all counts as a gap.
    pub fn gap_after(&self, floor: StreamId, lag: Option<u64>) -> Option<Gap> {
        let before = self.first.unwrap_or(self.last_generated.successor());
        if floor.successor() >= before {
            return None;
        }
        let deleted = self.max_deleted > floor;
        let trimmed = match lag {
            Some(lag) => lag > self.length,
            None => self.entries_added > self.length,
        };
        (deleted || trimmed).then_some(Gap { after: floor, before })
    }

    /// Whether a reader that has everything up to `after` can continue from this stream.
    pub fn retention_after(&self, after: StreamId) -> Retention {
        if after > self.last_generated {
            Retention::Unknown { last: self.last_generated }
        } else if self.gap_after(after, None).is_some() {
            Retention::Trimmed { oldest: self.first }
        } else {
            Retention::Complete
        }
    }
}

/// `XINFO STREAM`; `None` when the stream does not exist.
pub async fn stream_info<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Option<StreamInfo>, RedisError> {
    match redis::cmd("XINFO").arg("STREAM").arg(key).query_async(conn).await {
        Ok(reply) => Ok(Some(StreamInfo::parse(reply))),
        Err(e) if is_missing_key(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The stream's last generated ID now (`0-0` when it does not exist): where a reader that wants only what comes
/// next starts, and the position a snapshot taken now is consistent with.
pub async fn last_generated_id<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<StreamId, RedisError> {
    Ok(stream_info(conn, key).await?.map(|i| i.last_generated).unwrap_or_default())
}

/// One read of a stream: its state and the entries after an ID, of the same moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub info: StreamInfo,
    pub entries: Vec<Entry>,
}

/// Up to `count` entries after `after` (exclusive), read in one `MULTI` with `XINFO STREAM`, so the retention
/// check ([`StreamInfo::retention_after`]) vouches for exactly these entries. A missing stream reads as empty,
/// with nothing generated.
pub async fn read_after<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    after: StreamId,
    count: usize,
) -> Result<Page, RedisError> {
    let read: Result<(Value, Value), RedisError> = redis::pipe()
        .atomic()
        .cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .cmd("XRANGE")
        .arg(key)
        .arg(format!("({after}"))
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await;
    match read {
        Ok((info, range)) => Ok(Page { info: StreamInfo::parse(info), entries: range_reply(range) }),
        Err(e) if is_missing_key(&e) => Ok(Page::default()),
        Err(e) => Err(e),
    }
}

/// One consumer group, as `XINFO GROUPS` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    pub last_delivered: StreamId,
    /// Entries the group has read, counted by Redis; `None` when it cannot tell.
    pub entries_read: Option<u64>,
    /// Entries not yet delivered to the group; `None` when Redis cannot tell (e.g. after deletions).
    pub lag: Option<u64>,
}

impl GroupInfo {
    /// Decodes an `XINFO GROUPS` reply.
    pub fn parse_all(reply: Value) -> Vec<GroupInfo> {
        let Value::Array(groups) = reply else { return Vec::new() };
        groups
            .into_iter()
            .map(|group| {
                let group = fields(group);
                let text_of = |name: &str| field(&group, name).map(text);
                let number = |name: &str| text_of(name).and_then(|v| v.parse().ok());
                GroupInfo {
                    name: text_of("name").unwrap_or_default(),
                    pending: number("pending").unwrap_or(0),
                    last_delivered: text_of("last-delivered-id").and_then(|v| v.parse().ok()).unwrap_or_default(),
                    entries_read: number("entries-read"),
                    lag: number("lag"),
                }
            })
            .collect()
    }
}

/// `XINFO GROUPS`; no groups when the stream does not exist.
pub async fn groups<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Vec<GroupInfo>, RedisError> {
    match redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(conn).await {
        Ok(reply) => Ok(GroupInfo::parse_all(reply)),
        Err(e) if is_missing_key(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The field/value pairs of a reply made of them (`XINFO`, an entry's fields): a flat array in RESP2, a map in
/// RESP3.
pub fn fields(reply: Value) -> Vec<(String, Value)> {
    let flat: Vec<Value> = match reply {
        Value::Array(f) => f,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    };
    let mut it = flat.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((text(&k), v));
    }
    out
}

/// The value of `name` among [`fields`].
pub fn field<'a>(fields: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// A reply value as text: strings as they are (invalid UTF-8 replaced), integers in decimal, anything else empty.
pub fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    const KEY: &str = "code_graph:{p}:cdc";

    async fn connect(server: &RedisServer) -> redis::aio::MultiplexedConnection {
        redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    async fn query<T: redis::FromRedisValue>(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(conn).await.unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Adds an event body with an explicit ID.
    async fn add(conn: &mut redis::aio::MultiplexedConnection, id: &str) {
        let body = format!(r#"{{"n":"{id}"}}"#);
        let _: String = query(conn, &["XADD", KEY, id, STREAM_FIELD, &body]).await;
    }

    fn entry(id: &str) -> Entry {
        Entry { id: id.parse().unwrap(), body: Some(format!(r#"{{"n":"{id}"}}"#)) }
    }

    fn id(s: &str) -> StreamId {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn every_reply_shape_decodes_to_entries() {
        let server = RedisServer::start();
        let mut conn = connect(&server).await;
        for i in ["1-1", "2-0", "3-0"] {
            add(&mut conn, i).await;
        }
        let _: String = query(&mut conn, &["XADD", KEY, "4-0", "other", "x"]).await;

        let range: Value = query(&mut conn, &["XRANGE", KEY, "-", "+"]).await;
        let entries: Vec<Entry> = range_reply(range);
        assert_eq!(&entries[..3], &[entry("1-1"), entry("2-0"), entry("3-0")]);
        assert_eq!(entries[3], Entry { id: id("4-0"), body: Some(String::new()) }, "no envelope field: empty body");

        let read: Value = query(&mut conn, &["XREAD", "COUNT", "2", "STREAMS", KEY, "1-1"]).await;
        assert_eq!(read_reply::<Entry>(read), [entry("2-0"), entry("3-0")]);
        let nothing: Value = query(&mut conn, &["XREAD", "BLOCK", "1", "STREAMS", KEY, "$"]).await;
        assert_eq!(read_reply::<Entry>(nothing), [], "a timed-out blocking read");

        let _: String = query(&mut conn, &["XGROUP", "CREATE", KEY, "g", "0"]).await;
        let delivered: Value =
            query(&mut conn, &["XREADGROUP", "GROUP", "g", "c1", "COUNT", "3", "STREAMS", KEY, ">"]).await;
        assert_eq!(read_reply::<Entry>(delivered), [entry("1-1"), entry("2-0"), entry("3-0")]);

        // Deleted while pending: the group still lists it, without fields.
        let _: u64 = query(&mut conn, &["XDEL", KEY, "2-0"]).await;
        let pending: Value = query(&mut conn, &["XREADGROUP", "GROUP", "g", "c1", "STREAMS", KEY, "0"]).await;
        assert_eq!(read_reply::<Entry>(pending), [entry("1-1"), Entry { id: id("2-0"), body: None }, entry("3-0")]);

        let claimed: Value = query(&mut conn, &["XAUTOCLAIM", KEY, "g", "c2", "0", "0-0", "COUNT", "10"]).await;
        let (cursor, claimed) = autoclaim_reply::<Entry>(claimed);
        assert_eq!((cursor, claimed), (StreamId::ZERO, vec![entry("1-1"), entry("3-0")]), "the deleted one is dropped");

        let jobs: Value = query(&mut conn, &["XRANGE", KEY, "4-0", "4-0"]).await;
        let raw: Vec<RawEntry> = range_reply(jobs);
        assert_eq!((raw[0].field("other"), raw[0].field(STREAM_FIELD)), (Some("x"), None));

        let newest: Value = newest_entry_cmd(KEY).query_async(&mut conn).await.unwrap();
        assert_eq!(newest_entry_id(newest), Some(id("4-0")));
        let missing: Value = newest_entry_cmd("absent").query_async(&mut conn).await.unwrap();
        assert_eq!(newest_entry_id(missing), None);
    }

    #[tokio::test]
    async fn stream_and_group_info_and_missing_keys() {
        let server = RedisServer::start();
        let mut conn = connect(&server).await;
        assert_eq!(stream_info(&mut conn, KEY).await.unwrap(), None);
        assert_eq!(last_generated_id(&mut conn, KEY).await.unwrap(), StreamId::ZERO);
        assert_eq!(groups(&mut conn, KEY).await.unwrap(), []);
        assert_eq!(read_after(&mut conn, KEY, StreamId::ZERO, 10).await.unwrap(), Page::default());
        let err = redis::cmd("XINFO").arg("STREAM").arg(KEY).query_async::<Value>(&mut conn).await.unwrap_err();
        assert!(is_missing_key(&err), "{err}");
        let wrong_type = redis::cmd("XINFO").arg("NOPE").arg(KEY).query_async::<Value>(&mut conn).await.unwrap_err();
        assert!(!is_missing_key(&wrong_type), "{wrong_type}");

        for i in ["1-0", "2-0", "3-0", "4-0"] {
            add(&mut conn, i).await;
        }
        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MINID", "3-0"]).await;
        let info = stream_info(&mut conn, KEY).await.unwrap().unwrap();
        let expected = StreamInfo {
            length: 2,
            first: Some(id("3-0")),
            last_generated: id("4-0"),
            max_deleted: StreamId::ZERO, // trimming is not deleting, for Redis
            entries_added: 4,
        };
        assert_eq!(info, expected);
        assert_eq!(last_generated_id(&mut conn, KEY).await.unwrap(), id("4-0"));

        let page = read_after(&mut conn, KEY, id("3-0"), 10).await.unwrap();
        assert_eq!(page, Page { info: expected, entries: vec![entry("4-0")] });

        let _: String = query(&mut conn, &["XGROUP", "CREATE", KEY, "g", "0", "ENTRIESREAD", "0"]).await;
        let _: Value = query(&mut conn, &["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", KEY, ">"]).await;
        let group = GroupInfo {
            name: "g".into(),
            pending: 1,
            last_delivered: id("3-0"),
            // Counted from the group's creation: 1-0 and 2-0 were trimmed before it read anything.
            entries_read: Some(1),
            lag: Some(3),
        };
        assert_eq!(groups(&mut conn, KEY).await.unwrap(), [group]);
    }

    async fn group(conn: &mut redis::aio::MultiplexedConnection) -> GroupInfo {
        groups(conn, KEY).await.unwrap().remove(0)
    }

    async fn info(conn: &mut redis::aio::MultiplexedConnection) -> StreamInfo {
        stream_info(conn, KEY).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn gaps_are_found_with_and_without_a_lag() {
        let server = RedisServer::start();
        let mut conn = connect(&server).await;
        for i in ["1-0", "2-0", "3-0", "4-0", "5-0", "6-0"] {
            add(&mut conn, i).await;
        }
        let _: String = query(&mut conn, &["XGROUP", "CREATE", KEY, "g", "0", "ENTRIESREAD", "0"]).await;
        let _: Value = query(&mut conn, &["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", KEY, ">"]).await;
        let delivered = group(&mut conn).await.last_delivered;
        assert_eq!(delivered, id("1-0"));
        assert_eq!(info(&mut conn).await.gap_after(delivered, Some(5)), None, "nothing removed yet");
        assert_eq!(info(&mut conn).await.gap_after(delivered, None), None);

        // 2-0 trimmed and 4-0 deleted before the group got them: Redis can no longer count the group's lag, and
        // the gap is found without it.
        let _: u64 = query(&mut conn, &["XDEL", KEY, "4-0"]).await;
        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MINID", "3-0"]).await;
        let g = group(&mut conn).await;
        assert_eq!(g.lag, None, "Redis cannot tell the lag after a deletion");
        let i = info(&mut conn).await;
        assert_eq!((i.first, i.max_deleted), (Some(id("3-0")), id("4-0")));
        assert_eq!(i.gap_after(g.last_delivered, g.lag), Some(Gap { after: id("1-0"), before: id("3-0") }));
        assert_eq!(i.gap_after(id("3-0"), None), None, "inside the stream: nothing after it was trimmed");

        // Trimming is not recorded in max-deleted-entry-id: only the lag, or the conservative answer, sees it.
        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MINID", "6-0"]).await;
        let i = info(&mut conn).await;
        assert_eq!((i.first, i.max_deleted), (Some(id("6-0")), id("4-0")), "XTRIM leaves max-deleted-entry-id");
        assert_eq!(i.gap_after(id("4-0"), None), Some(Gap { after: id("4-0"), before: id("6-0") }));

        // A group that has everything (set there with its count, as after a rebuild), then the stream trimmed
        // below it and written again: its lag (1) says nothing it needs was lost; a reader without a count
        // cannot tell and resyncs.
        let _: String = query(&mut conn, &["XGROUP", "SETID", KEY, "g", "6-0", "ENTRIESREAD", "6"]).await;
        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MINID", "6-1"]).await;
        add(&mut conn, "9-0").await;
        let (g, i) = (group(&mut conn).await, info(&mut conn).await);
        assert_eq!((g.last_delivered, g.lag, i.length), (id("6-0"), Some(1), 1));
        assert_eq!(i.gap_after(g.last_delivered, g.lag), None);
        assert_eq!(i.gap_after(g.last_delivered, None), Some(Gap { after: id("6-0"), before: id("9-0") }));

        // A position inside the stream: nothing after it can have been trimmed, count or not.
        add(&mut conn, "10-0").await;
        assert_eq!(info(&mut conn).await.gap_after(id("9-0"), None), None);

        // Everything trimmed: what is gone ends after the last generated ID.
        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MAXLEN", "0"]).await;
        let i = info(&mut conn).await;
        assert_eq!((i.length, i.first), (0, None));
        assert_eq!(i.gap_after(id("9-0"), None), Some(Gap { after: id("9-0"), before: id("10-1") }));
        assert_eq!(i.gap_after(id("10-0"), None), None);
    }

    #[tokio::test]
    async fn retention_says_whether_a_reader_can_continue() {
        let server = RedisServer::start();
        let mut conn = connect(&server).await;
        for i in ["1-0", "2-0", "3-0", "4-0"] {
            add(&mut conn, i).await;
        }
        let i = info(&mut conn).await;
        assert_eq!(i.retention_after(StreamId::ZERO), Retention::Complete, "nothing trimmed");
        assert_eq!(i.retention_after(id("4-0")), Retention::Complete);
        assert_eq!(i.retention_after(id("4-1")), Retention::Unknown { last: id("4-0") }, "an id from elsewhere");

        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MINID", "3-0"]).await;
        let i = info(&mut conn).await;
        assert_eq!(i.retention_after(id("1-0")), Retention::Trimmed { oldest: Some(id("3-0")) });
        assert_eq!(i.retention_after(StreamId::ZERO), Retention::Trimmed { oldest: Some(id("3-0")) });
        // Without a count, 2-0 cannot be told from the last entry removed: the reader resyncs.
        assert_eq!(i.retention_after(id("2-0")), Retention::Trimmed { oldest: Some(id("3-0")) });
        assert_eq!(i.retention_after(id("3-0")), Retention::Complete);

        let _: u64 = query(&mut conn, &["XTRIM", KEY, "MAXLEN", "0"]).await;
        let i = info(&mut conn).await;
        assert_eq!(i.retention_after(id("3-0")), Retention::Trimmed { oldest: None });
        assert_eq!(i.retention_after(id("4-0")), Retention::Complete, "up to date with an empty stream");
    }
}
