//! Talking to FalkorDB over the Redis protocol: `GRAPH.QUERY` for writes, `GRAPH.RO_QUERY … --compact` for reads,
//! whose typed replies are turned into JSON values here.

use redis::Value;
use serde_json::Value as Json;

use codegraph_shared::{
    functions::is_unavailable,
    redis_handle::{RedisHandle, RedisTls},
    stream::text,
};

use crate::sinks::SinkError;

#[derive(Clone, Debug)]
pub struct FalkorClient {
    redis: RedisHandle,
}

impl FalkorClient {
    /// A client for `url` without TLS files (a `rediss://` URL verifies against the system's roots). Never the
    /// Redis settings' TLS files: FalkorDB is another server.
    pub fn open(url: &str) -> Result<Self, SinkError> {
        Self::open_with(url, &RedisTls::default())
    }

    /// A client for `url` with TLS files (`rediss://`): a private CA, a client certificate.
    pub fn open_with(url: &str, tls: &RedisTls) -> Result<Self, SinkError> {
        let redis =
            RedisHandle::open_with(url, tls).map_err(|e| SinkError::Rejected(format!("falkordb url {url:?}: {e}")))?;
        Ok(Self { redis })
    }

    /// Runs a write query.
    pub async fn write(&self, graph: &str, query: &str) -> Result<(), SinkError> {
        self.run("GRAPH.QUERY", graph, query).await.map(|_| ())
    }

    /// Runs a read-only query; each row as JSON values (nodes and edges as their property maps).
    pub async fn read(&self, graph: &str, query: &str) -> Result<Vec<Vec<Json>>, SinkError> {
        self.run("GRAPH.RO_QUERY", graph, query).await
    }

    async fn run(&self, command: &str, graph: &str, query: &str) -> Result<Vec<Vec<Json>>, SinkError> {
        let mut conn = self.redis.conn();
        let reply: Value = redis::cmd(command)
            .arg(graph)
            .arg(query)
            .arg("--compact")
            .query_async(&mut conn)
            .await
            .map_err(classify)?;
        Ok(rows(reply))
    }

    pub async fn ping(&self) -> bool {
        self.redis.ping().await
    }
}

/// Redis errors that mean "try again later" are not the batch's fault.
pub fn classify(e: redis::RedisError) -> SinkError {
    if is_unavailable(&e) {
        SinkError::Unavailable(e.to_string())
    } else {
        SinkError::Rejected(e.to_string())
    }
}

fn rows(reply: Value) -> Vec<Vec<Json>> {
    // A compact reply is [header, rows, statistics]; a query without RETURN has only [statistics].
    let Value::Array(mut parts) = reply else { return Vec::new() };
    if parts.len() < 3 {
        return Vec::new();
    }
    let Value::Array(rows) = parts.swap_remove(1) else { return Vec::new() };
    rows.into_iter()
        .map(|row| match row {
            Value::Array(cells) => cells.into_iter().map(cell).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// One compact `[type, value]` cell.
fn cell(v: Value) -> Json {
    let Value::Array(mut pair) = v else { return Json::Null };
    if pair.len() != 2 {
        return Json::Null;
    }
    let value = pair.pop().expect("two items");
    let kind = int(&pair[0]);
    match kind {
        2 => Json::String(text(&value)),
        3 => Json::from(int(&value)),
        4 => Json::Bool(text(&value) == "true"),
        5 => text(&value).parse::<f64>().map(Json::from).unwrap_or(Json::Null),
        6 => match value {
            Value::Array(items) => Json::Array(items.into_iter().map(cell).collect()),
            _ => Json::Null,
        },
        10 => match value {
            Value::Array(items) => {
                let mut map = serde_json::Map::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    map.insert(text(&k), cell(v));
                }
                Json::Object(map)
            }
            _ => Json::Null,
        },
        _ => Json::Null,
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => text(other).parse().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn compact_cells_become_json() {
        let map = Value::Array(vec![
            Value::Int(10),
            Value::Array(vec![
                bulk("n"),
                Value::Array(vec![Value::Int(3), Value::Int(4)]),
                bulk("ok"),
                Value::Array(vec![Value::Int(4), bulk("true")]),
                bulk("l"),
                Value::Array(vec![
                    Value::Int(6),
                    Value::Array(vec![
                        Value::Array(vec![Value::Int(5), bulk("0.5")]),
                        Value::Array(vec![Value::Int(2), bulk("x")]),
                    ]),
                ]),
            ]),
        ]);
        assert_eq!(cell(map), serde_json::json!({"n": 4, "ok": true, "l": [0.5, "x"]}));
    }
}
