//! Dead letters: a stream entry that a sink failed to apply `max_deliveries` times (it cannot be decoded, or one
//! of its changes cannot be applied) is moved, with its error, to the stream `code_graph:{p}:cdc:dlq:<sink>` and
//! acknowledged, so the sink goes on with the rest. A letter is a whole entry — a change set is applied whole or
//! not at all, so none of its changes is applied without the others.
//!
//! Fields of a dead letter: `id` (the entry's CDC stream ID), `e` (the envelope as stored), `error`,
//! `deliveries`, `consumer`. The stream is capped at [`MAX_DEAD_LETTERS`] (approximately).

use redis::{aio::ConnectionLike, RedisError, Value};
use serde::Serialize;

use codegraph_shared::{event::StreamId, names::RedisNames};

use codegraph_shared::{
    event::STREAM_FIELD,
    stream::{parse_entry, RawEntry},
};

/// Approximate cap on each dead-letter stream.
pub const MAX_DEAD_LETTERS: u64 = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// ID of the dead letter itself.
    pub dlq_id: String,
    /// ID of the entry in the CDC stream.
    pub entry_id: StreamId,
    pub body: String,
    pub error: String,
    pub deliveries: u64,
    pub consumer: String,
}

pub struct DeadLetters {
    key: String,
}

impl DeadLetters {
    pub fn new(names: &RedisNames, sink: &str) -> Self {
        Self { key: names.dead_letters(sink) }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub async fn send<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        entry_id: StreamId,
        body: &str,
        error: &str,
        deliveries: u64,
        consumer: &str,
    ) -> Result<(), RedisError> {
        redis::cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(MAX_DEAD_LETTERS)
            .arg("*")
            .arg("id")
            .arg(entry_id.to_string())
            .arg("e")
            .arg(body)
            .arg("error")
            .arg(error)
            .arg("deliveries")
            .arg(deliveries)
            .arg("consumer")
            .arg(consumer)
            .query_async::<String>(conn)
            .await?;
        Ok(())
    }

    /// The oldest `count` dead letters.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        count: usize,
    ) -> Result<Vec<DeadLetter>, RedisError> {
        let reply: Value =
            redis::cmd("XRANGE").arg(&self.key).arg("-").arg("+").arg("COUNT").arg(count).query_async(conn).await?;
        let Value::Array(entries) = reply else { return Ok(Vec::new()) };
        Ok(entries.into_iter().filter_map(dead_letter).collect())
    }

    pub async fn remove<C: ConnectionLike + Send>(&self, conn: &mut C, dlq_id: &str) -> Result<(), RedisError> {
        redis::cmd("XDEL").arg(&self.key).arg(dlq_id).query_async::<i64>(conn).await?;
        Ok(())
    }

    pub async fn len<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<u64, RedisError> {
        redis::cmd("XLEN").arg(&self.key).query_async(conn).await
    }
}

fn dead_letter(entry: Value) -> Option<DeadLetter> {
    let entry: RawEntry = parse_entry(entry)?;
    let field = |name: &str| entry.field(name).unwrap_or_default().to_owned();
    let body = field(STREAM_FIELD);
    Some(DeadLetter {
        dlq_id: entry.id.to_string(),
        entry_id: field("id").parse().ok()?,
        body,
        error: field("error"),
        deliveries: field("deliveries").parse().unwrap_or(0),
        consumer: field("consumer"),
    })
}
