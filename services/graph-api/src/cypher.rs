//! Read-only Cypher on a project's FalkorDB graph: the graph the stream-consumer's FalkorDB sink keeps equal to
//! the project's graph in Redis (`<falkordb.graph_prefix><project>`). Used by `POST /api/graph/query` and the MCP
//! tool `cypher_query`.
//!
//! - FalkorDB runs the statement with `GRAPH.RO_QUERY`, so it refuses any statement that writes (400
//!   `read_only`); with its `timeout` argument (`falkordb.query_timeout_ms`, a request may ask for less; 504
//!   `query_timeout`).
//! - Parameters (`params`) become FalkorDB's `CYPHER name = value …` prefix (the Redis protocol has no parameter
//!   binding): every value is written as a Cypher literal here, strings with `\` and `'` escaped, map keys
//!   restricted to identifiers, NUL refused, so a value can never end its literal.
//! - At most `falkordb.max_rows` rows are answered (`truncated: true` when there were more). FalkorDB still
//!   computes and sends the whole result (bounded by the timeout): a statement expecting many rows should say
//!   `LIMIT`.
//! - Freshness: the answer carries the stream ID the sink had applied before the statement ran (its `_Meta`
//!   record; the answer reflects every change up to it, maybe more) and the project's last stream ID in Redis.
//!   With `min_id` the statement waits until the sink has applied that ID (read-your-writes across the CDC
//!   pipeline), at most `falkordb.max_wait_ms` (then 504 `sink_behind`). Nothing tells graph-api when the sink
//!   writes (FalkorDB sends no keyspace events for graph writes, the consumer publishes nothing), so the wait
//!   re-reads the record with a backoff from 1 ms to 50 ms.
//! - Replies are read in FalkorDB's compact form, which keeps every value's type (the verbose form prints lists
//!   and maps as text); the label, property and relationship-type ids of nodes and edges are resolved with
//!   `db.labels()`, `db.propertyKeys()` and `db.relationshipTypes()`, read after the statement (ids only grow, so
//!   those lists cover every id the reply holds).
//! - Each call opens its own connection, so a slow statement delays no other request; FalkorDB unreachable is
//!   503 `unavailable`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        LazyLock, Mutex,
    },
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use codegraph_shared::{
    event::StreamId,
    functions::is_unavailable,
    http::ApiError,
    names::{RedisNames, PROJECTS_KEY},
    project::ProjectName,
    redis_handle,
    stream::last_generated_id,
};
use redis::{aio::MultiplexedConnection, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::{settings::FalkorDbSettings, state::AppState};

/// One read-only statement and how to run it.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CypherRequest {
    /// One Cypher statement that reads (FalkorDB refuses one that writes). Parameters are `$name`.
    pub statement: String,
    /// Values of the statement's `$name` parameters: JSON null, booleans, numbers, strings, arrays and objects
    /// (object keys and parameter names: `[A-Za-z_][A-Za-z0-9_]*`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Json>,
    /// A stream ID (e.g. the `event_id` a mutation answered): wait until the FalkorDB sink has applied it.
    #[serde(default)]
    #[schema(example = "1764201600123-0")]
    pub min_id: Option<String>,
    /// Most rows (default and maximum: `falkordb.max_rows`).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Longest run time in milliseconds (default and maximum: `falkordb.query_timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// A statement's result and how fresh the graph it ran on was.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CypherAnswer {
    /// Column names, as the statement's `RETURN` wrote them.
    pub columns: Vec<String>,
    /// One array per row, a value per column. A node is `{"element": "node", "internal_id", "labels",
    /// "properties"}`, a relationship `{"element": "relationship", "internal_id", "type", "start", "end",
    /// "properties"}` (`start`/`end`: the internal ids of its nodes), a path `{"element": "path", "nodes",
    /// "relationships"}`; a point `{"latitude", "longitude"}`; temporal values `{"datetime"|"date"|"time"|
    /// "duration": seconds}`.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Json>>,
    /// True when the statement returned more rows than `rows` holds.
    pub truncated: bool,
    /// The stream ID the FalkorDB sink had applied when the statement ran (`null`: the sink has no record): the
    /// rows reflect every change up to it.
    #[schema(value_type = Option<String>, example = "1764201600123-0")]
    pub applied_id: Option<StreamId>,
    /// The project's last stream ID in Redis; equal to `applied_id` when the sink is up to date.
    #[schema(value_type = String, example = "1764201600123-0")]
    pub last_id: StreamId,
    /// Milliseconds spent waiting for `min_id`.
    pub waited_ms: u64,
}

/// The `_Meta` record the sink writes with every change it applies (see the stream-consumer's FalkorDB sink).
const READ_APPLIED: &str = "MATCH (g:_Meta {id: 'meta'}) RETURN g.ms, g.seq";
/// Longest pause between two reads of the sink's record while waiting for `min_id`.
const MAX_POLL: Duration = Duration::from_millis(50);
/// Time to connect to FalkorDB.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest parameter name.
pub(crate) const MAX_PARAM_NAME: usize = 64;

/// Runs `request` on `project`'s FalkorDB graph, as the module says.
pub async fn run(state: &AppState, project: &ProjectName, request: CypherRequest) -> Result<CypherAnswer, ApiError> {
    let settings = &state.settings.falkordb;
    let statement = prepare(settings, &request)?;
    let min_id = request.min_id.as_deref().map(str::parse::<StreamId>).transpose()?;
    let limit = request.limit.unwrap_or(settings.max_rows).min(settings.max_rows);
    let timeout_ms = request.timeout_ms.unwrap_or(settings.query_timeout_ms).clamp(1, settings.query_timeout_ms.max(1));

    let mut redis = state.conn();
    let known: bool = redis::cmd("SISMEMBER").arg(PROJECTS_KEY).arg(project.as_str()).query_async(&mut redis).await?;
    if !known {
        return Err(ApiError::not_found(format!("project {project} does not exist")));
    }
    let stream = RedisNames::new(project).cdc_stream();
    if let Some(min_id) = min_id {
        let last_id = last_generated_id(&mut redis, &stream).await?;
        if min_id > last_id {
            return Err(ApiError::bad_request(
                "invalid_min_id",
                format!("min_id {min_id} is past project {project}'s last stream ID {last_id}: not one of its events"),
            ));
        }
    }

    let graph = format!("{}{project}", settings.graph_prefix);
    let mut falkor = connect(settings, Duration::from_millis(timeout_ms)).await?;
    let started = Instant::now();
    let mut applied = applied_id(&mut falkor, &graph).await?;
    if let Some(min_id) = min_id {
        let deadline = started + Duration::from_millis(settings.max_wait_ms);
        let mut pause = Duration::from_millis(1);
        while applied.is_none_or(|a| a < min_id) {
            let now = Instant::now();
            if now >= deadline {
                return Err(sink_behind(min_id, applied, settings.max_wait_ms));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
            applied = applied_id(&mut falkor, &graph).await?;
        }
    }
    let waited_ms = started.elapsed().as_millis() as u64;

    let reply: Value = redis::cmd("GRAPH.RO_QUERY")
        .arg(&graph)
        .arg(&statement)
        .arg("--compact")
        .arg("timeout")
        .arg(timeout_ms)
        .query_async(&mut falkor)
        .await
        .map_err(|e| statement_error(e, project, timeout_ms))?;
    // Read after the sink's record, so it is never behind `applied`.
    let last_id = last_generated_id(&mut redis, &stream).await?;
    let (columns, mut rows) = split_reply(reply)?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    let schema = if rows.iter().flatten().any(holds_entity) {
        Schema::read(&mut falkor, &graph).await?
    } else {
        Schema::default()
    };
    let rows = rows.into_iter().map(|row| row.into_iter().map(|cell| schema.cell(cell)).collect()).collect();
    Ok(CypherAnswer { columns, rows, truncated, applied_id: applied, last_id, waited_ms })
}

/// 504: the sink did not apply `min_id` in time.
fn sink_behind(min_id: StreamId, applied: Option<StreamId>, waited_ms: u64) -> ApiError {
    let shown = applied.map_or_else(|| "nothing".to_owned(), |a| a.to_string());
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "sink_behind",
        format!(
            "the FalkorDB sink had not applied {min_id} after {waited_ms} ms (it has applied {shown}); retry later"
        ),
    )
    .with_details(serde_json::json!({ "min_id": min_id, "applied_id": applied }))
}

/// The statement FalkorDB runs: the `CYPHER` prefix of the parameters, then the statement.
fn prepare(settings: &FalkorDbSettings, request: &CypherRequest) -> Result<String, ApiError> {
    let statement = request.statement.trim();
    if statement.is_empty() {
        return Err(ApiError::bad_request("invalid_cypher", "the statement is empty"));
    }
    if statement.len() > settings.max_statement_bytes {
        return Err(ApiError::bad_request(
            "invalid_cypher",
            format!(
                "the statement has {} bytes; at most {} are allowed",
                statement.len(),
                settings.max_statement_bytes
            ),
        ));
    }
    if statement.contains('\0') {
        return Err(ApiError::bad_request("invalid_cypher", "the statement contains a NUL character"));
    }
    if request.params.is_empty() {
        return Ok(statement.to_owned());
    }
    let mut text = String::from("CYPHER");
    for (name, value) in &request.params {
        if !is_identifier(name) {
            return Err(ApiError::bad_request(
                "invalid_params",
                format!("parameter name {name:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*, at most {MAX_PARAM_NAME} bytes)"),
            ));
        }
        text.push(' ');
        text.push_str(name);
        // Spaces around `=`: FalkorDB's prefix parser misreads `a=-1` and `e={…}`.
        text.push_str(" = ");
        literal(value, &mut text)
            .map_err(|why| ApiError::bad_request("invalid_params", format!("parameter {name}: {why}")))?;
    }
    text.push(' ');
    text.push_str(statement);
    Ok(text)
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_PARAM_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Writes `value` as a Cypher literal that FalkorDB reads back as the same value.
fn literal(value: &Json, out: &mut String) -> Result<(), String> {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if n.is_u64() {
                return Err(format!("{n} does not fit a 64-bit signed integer"));
            } else {
                // `{:e}` always has an exponent, so FalkorDB reads a float even for whole numbers (`2e0`), and
                // it is the shortest text that reads back as the same double.
                let f = n.as_f64().ok_or_else(|| format!("{n} is not a number FalkorDB can hold"))?;
                out.push_str(&format!("{f:e}"));
            }
        }
        Json::String(s) => {
            if s.contains('\0') {
                return Err("a string contains a NUL character".into());
            }
            out.push('\'');
            for c in s.chars() {
                if c == '\\' || c == '\'' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('\'');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                literal(item, out)?;
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if !is_identifier(key) {
                    // FalkorDB's prefix parser does not take quoted keys with other characters.
                    return Err(format!("map key {key:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"));
                }
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(": ");
                literal(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// `redis::Client`s by configuration (a client holds no connection, so it outlives any runtime); one in the
/// service, whose settings do not change.
static CLIENTS: LazyLock<Mutex<HashMap<[String; 4], redis::Client>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// A connection of its own to FalkorDB, whose replies may take `query_timeout` (plus a margin: FalkorDB stops
/// the statement itself).
async fn connect(settings: &FalkorDbSettings, query_timeout: Duration) -> Result<MultiplexedConnection, ApiError> {
    if settings.url.is_empty() {
        return Err(ApiError::unavailable("no FalkorDB is configured (falkordb.url)"));
    }
    let key = [&settings.url, &settings.ca_file, &settings.cert_file, &settings.key_file].map(String::clone);
    let client = {
        let mut clients = CLIENTS.lock().expect("clients lock");
        match clients.get(&key) {
            Some(client) => client.clone(),
            None => {
                let client = redis_handle::client(&settings.url, &settings.tls()).map_err(|e| {
                    tracing::error!(error = %e, "falkordb.url or its TLS files are unusable");
                    ApiError::unavailable("FalkorDB is misconfigured (falkordb.url or its TLS files); see the log")
                })?;
                clients.insert(key, client.clone());
                client
            }
        }
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(query_timeout + Duration::from_secs(2)));
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| {
        tracing::warn!(error = %e, "falkordb unreachable");
        ApiError::unavailable("FalkorDB is unreachable; retry later")
    })?;
    if !MEMORY_CAP_CHECKED.swap(true, Ordering::Relaxed) {
        warn_without_memory_cap(&mut conn).await;
    }
    Ok(conn)
}

/// Whether this process has looked at FalkorDB's per-query memory cap.
static MEMORY_CAP_CHECKED: AtomicBool = AtomicBool::new(false);

/// Warns once when FalkorDB lets one query use any amount of memory: a read-only statement can still build a
/// huge value (`range(1, 1000000000)` allocates 16 GB before any check), which the timeout does not stop. The
/// cap (`QUERY_MEM_CAPACITY`) stops most such statements; a memory limit on FalkorDB's process stops the rest.
async fn warn_without_memory_cap(conn: &mut MultiplexedConnection) {
    let reply: Result<Vec<Value>, _> =
        redis::cmd("GRAPH.CONFIG").arg("GET").arg("QUERY_MEM_CAPACITY").query_async(conn).await;
    if let Ok(reply) = reply {
        if reply.get(1).is_some_and(|v| int(v) == 0) {
            tracing::warn!(
                "FalkorDB has no per-query memory cap (QUERY_MEM_CAPACITY 0): a read-only Cypher statement of \
                 POST /api/graph/query can exhaust its memory; set one, and a memory limit on its process"
            );
        }
    }
}

/// The stream ID the sink has applied to `graph`; `None` when the graph or its record does not exist.
async fn applied_id(falkor: &mut MultiplexedConnection, graph: &str) -> Result<Option<StreamId>, ApiError> {
    let reply: Result<Value, _> =
        redis::cmd("GRAPH.RO_QUERY").arg(graph).arg(READ_APPLIED).arg("--compact").query_async(falkor).await;
    let reply = match reply {
        Err(e) if is_empty_key(&e) => return Ok(None),
        other => other.map_err(backend_error)?,
    };
    let (_, rows) = split_reply(reply)?;
    let int = |cell: Option<&Value>| match scalar_of(cell?) {
        Json::Number(n) => n.as_u64(),
        _ => None,
    };
    Ok(rows.first().and_then(|row| Some(StreamId::new(int(row.first())?, int(row.get(1))?))))
}

/// A FalkorDB error that says the graph does not exist.
fn is_empty_key(e: &redis::RedisError) -> bool {
    server_message(e).is_some_and(|m| m.contains("empty key"))
}

/// FalkorDB's own message for an error it answered (redis-rs splits it into a code, the first word, and a
/// detail); `None` for a connection error.
fn server_message(e: &redis::RedisError) -> Option<String> {
    if is_unavailable(e) {
        return None;
    }
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => Some(format!("{code} {detail}")),
        (Some(code), None) => Some(code.to_owned()),
        _ => None,
    }
}

/// What a failed statement means for the client.
fn statement_error(e: redis::RedisError, project: &ProjectName, timeout_ms: u64) -> ApiError {
    let Some(message) = server_message(&e) else { return backend_error(e) };
    if message.contains("only on read-only queries") {
        ApiError::bad_request("read_only", "this route runs read-only statements: FalkorDB refused one that writes")
    } else if message.contains("TIMEOUT_MAX") {
        tracing::error!(%message, "falkordb.query_timeout_ms exceeds FalkorDB's TIMEOUT_MAX");
        ApiError::internal("falkordb.query_timeout_ms exceeds FalkorDB's TIMEOUT_MAX; see the service log")
    } else if message.contains("timed out") {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "query_timeout",
            format!("the statement ran longer than {timeout_ms} ms and was stopped; narrow it or add LIMIT"),
        )
    } else if message.contains("mem consumption exceeded") {
        ApiError::bad_request(
            "query_memory",
            "the statement needed more memory than FalkorDB allows one query (its QUERY_MEM_CAPACITY)",
        )
    } else if message.contains("empty key") {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_graph",
                format!(
                    "FalkorDB has no graph of project {project} yet: the stream-consumer's FalkorDB sink has not \
                     applied any of its events"
                ),
            )
        }
    } else {
        ApiError::bad_request("invalid_cypher", format!("FalkorDB refused the statement: {message}"))
    }
}

/// FalkorDB unreachable (503), or an answer it should not have given (logged, 500).
fn backend_error(e: redis::RedisError) -> ApiError {
    if is_unavailable(&e) {
        tracing::warn!(error = %e, "falkordb unavailable");
        ApiError::unavailable("FalkorDB is unavailable; retry later")
    } else {
        tracing::error!(error = %e, "falkordb error");
        ApiError::internal("FalkorDB answered an error; see the service log")
    }
}

/// A compact reply's column names and rows (cells still in FalkorDB's form). A reply without a result set (a
/// statement without `RETURN`) has neither.
fn split_reply(reply: Value) -> Result<(Vec<String>, Vec<Vec<Value>>), ApiError> {
    let Value::Array(mut parts) = reply else {
        return Err(ApiError::internal("FalkorDB answered something other than a result set"));
    };
    if parts.len() < 3 {
        return Ok((Vec::new(), Vec::new()));
    }
    let rows = match parts.swap_remove(1) {
        Value::Array(rows) => rows
            .into_iter()
            .map(|row| match row {
                Value::Array(cells) => cells,
                _ => Vec::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let columns = match &parts[0] {
        // Each column is `[type, name]`.
        Value::Array(header) => header
            .iter()
            .map(|column| match column {
                Value::Array(pair) => pair.last().map(text).unwrap_or_default(),
                other => text(other),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok((columns, rows))
}

/// FalkorDB's value types in compact replies.
mod kind {
    pub const NULL: i64 = 1;
    pub const STRING: i64 = 2;
    pub const INTEGER: i64 = 3;
    pub const BOOLEAN: i64 = 4;
    pub const DOUBLE: i64 = 5;
    pub const ARRAY: i64 = 6;
    pub const EDGE: i64 = 7;
    pub const NODE: i64 = 8;
    pub const PATH: i64 = 9;
    pub const MAP: i64 = 10;
    pub const POINT: i64 = 11;
    pub const VECTOR: i64 = 12;
    pub const DATETIME: i64 = 13;
    pub const DATE: i64 = 14;
    pub const TIME: i64 = 15;
    pub const DURATION: i64 = 16;
}

/// Whether a `[type, value]` cell holds a node, an edge or a path, somewhere.
fn holds_entity(cell: &Value) -> bool {
    let Value::Array(pair) = cell else { return false };
    match (pair.first().map(int), pair.get(1)) {
        (Some(kind::NODE | kind::EDGE | kind::PATH), _) => true,
        (Some(kind::ARRAY), Some(Value::Array(items))) => items.iter().any(holds_entity),
        (Some(kind::MAP), Some(Value::Array(items))) => items.iter().skip(1).step_by(2).any(holds_entity),
        _ => false,
    }
}

/// A cell without nodes or edges, as JSON.
fn scalar_of(cell: &Value) -> Json {
    Schema::default().cell(cell.clone())
}

/// The names behind the ids of a graph's labels, property keys and relationship types.
#[derive(Debug, Default)]
struct Schema {
    labels: Vec<String>,
    properties: Vec<String>,
    types: Vec<String>,
}

impl Schema {
    async fn read(falkor: &mut MultiplexedConnection, graph: &str) -> Result<Self, ApiError> {
        let mut names = Vec::with_capacity(3);
        for procedure in ["CALL db.labels()", "CALL db.propertyKeys()", "CALL db.relationshipTypes()"] {
            let reply: Value = redis::cmd("GRAPH.RO_QUERY")
                .arg(graph)
                .arg(procedure)
                .arg("--compact")
                .query_async(falkor)
                .await
                .map_err(backend_error)?;
            let (_, rows) = split_reply(reply)?;
            let list: Vec<String> = rows
                .into_iter()
                .map(|row| match row.into_iter().next().map(|c| Schema::default().cell(c)) {
                    Some(Json::String(s)) => s,
                    _ => String::new(),
                })
                .collect();
            names.push(list);
        }
        let types = names.pop().unwrap_or_default();
        let properties = names.pop().unwrap_or_default();
        let labels = names.pop().unwrap_or_default();
        Ok(Self { labels, properties, types })
    }

    fn name(list: &[String], id: i64) -> Json {
        usize::try_from(id).ok().and_then(|i| list.get(i)).map_or(Json::Null, |s| Json::String(s.clone()))
    }

    /// One `[type, value]` cell.
    fn cell(&self, cell: Value) -> Json {
        let Value::Array(mut pair) = cell else { return Json::Null };
        if pair.len() != 2 {
            return Json::Null;
        }
        let value = pair.pop().expect("two items");
        self.value(int(&pair[0]), value)
    }

    fn value(&self, kind: i64, value: Value) -> Json {
        match (kind, value) {
            (kind::NULL, _) => Json::Null,
            (kind::STRING, v) => Json::String(text(&v)),
            (kind::INTEGER, v) => Json::from(int(&v)),
            (kind::BOOLEAN, v) => Json::Bool(text(&v) == "true"),
            (kind::DOUBLE, v) => double(&v),
            (kind::ARRAY, Value::Array(items)) => Json::Array(items.into_iter().map(|c| self.cell(c)).collect()),
            (kind::MAP, Value::Array(items)) => {
                let mut map = Map::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    map.insert(text(&k), self.cell(v));
                }
                Json::Object(map)
            }
            (kind::NODE, Value::Array(parts)) => self.node(parts),
            (kind::EDGE, Value::Array(parts)) => self.edge(parts),
            (kind::PATH, Value::Array(parts)) => {
                let mut parts = parts.into_iter().map(|c| self.cell(c));
                let nodes = parts.next().unwrap_or_else(|| Json::Array(Vec::new()));
                let relationships = parts.next().unwrap_or_else(|| Json::Array(Vec::new()));
                serde_json::json!({ "element": "path", "nodes": nodes, "relationships": relationships })
            }
            (kind::POINT, Value::Array(parts)) => {
                serde_json::json!({ "latitude": parts.first().map(double), "longitude": parts.get(1).map(double) })
            }
            (kind::VECTOR, Value::Array(items)) => Json::Array(items.iter().map(double).collect()),
            (kind::DATETIME, v) => serde_json::json!({ "datetime": int(&v) }),
            (kind::DATE, v) => serde_json::json!({ "date": int(&v) }),
            (kind::TIME, v) => serde_json::json!({ "time": int(&v) }),
            (kind::DURATION, v) => serde_json::json!({ "duration": int(&v) }),
            (kind, _) => Json::String(format!("<FalkorDB value of type {kind}>")),
        }
    }

    /// `[id, [label ids], [[property id, type, value], …]]`.
    fn node(&self, parts: Vec<Value>) -> Json {
        let mut parts = parts.into_iter();
        let id = parts.next().map(|v| int(&v));
        let labels = match parts.next() {
            Some(Value::Array(ids)) => ids.iter().map(|l| Self::name(&self.labels, int(l))).collect(),
            _ => Vec::new(),
        };
        let properties = self.properties(parts.next());
        serde_json::json!({ "element": "node", "internal_id": id, "labels": labels, "properties": properties })
    }

    /// `[id, type id, source id, destination id, [[property id, type, value], …]]`.
    fn edge(&self, parts: Vec<Value>) -> Json {
        let ints: Vec<i64> = parts.iter().take(4).map(int).collect();
        let properties = self.properties(parts.into_iter().nth(4));
        serde_json::json!({
            "element": "relationship",
            "internal_id": ints.first(),
            "type": ints.get(1).map(|t| Self::name(&self.types, *t)),
            "start": ints.get(2),
            "end": ints.get(3),
            "properties": properties,
        })
    }

    fn properties(&self, list: Option<Value>) -> Map<String, Json> {
        let Some(Value::Array(list)) = list else { return Map::new() };
        list.into_iter()
            .filter_map(|triple| {
                let Value::Array(mut triple) = triple else { return None };
                if triple.len() != 3 {
                    return None;
                }
                let value = triple.pop().expect("three items");
                let kind = int(&triple[1]);
                let key = match Self::name(&self.properties, int(&triple[0])) {
                    Json::String(s) => s,
                    _ => format!("<property {}>", int(&triple[0])),
                };
                Some((key, self.value(kind, value)))
            })
            .collect()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        _ => String::new(),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => text(other).parse().unwrap_or(0),
    }
}

/// A double as FalkorDB prints it; one JSON cannot hold (NaN, infinities) stays text.
fn double(v: &Value) -> Json {
    let s = text(v);
    match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(n) => Json::Number(n),
        None => Json::String(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(statement: &str, params: Json) -> CypherRequest {
        let Json::Object(params) = params else { panic!("params must be an object") };
        CypherRequest { statement: statement.into(), params, ..Default::default() }
    }

    #[test]
    fn parameters_become_a_cypher_prefix() {
        let settings = FalkorDbSettings::default();
        let r = request(
            " MATCH (n) WHERE n.id = $id RETURN n ",
            serde_json::json!({"id": "it's a \\ ' test", "n": -1, "f": 2.0, "l": [null, true], "m": {"k_1": "v"}}),
        );
        assert_eq!(
            prepare(&settings, &r).unwrap(),
            "CYPHER f = 2e0 id = 'it\\'s a \\\\ \\' test' l = [null, true] m = {k_1: 'v'} n = -1 \
             MATCH (n) WHERE n.id = $id RETURN n"
        );
        assert_eq!(prepare(&settings, &request("RETURN 1", serde_json::json!({}))).unwrap(), "RETURN 1");
    }

    #[test]
    fn what_cannot_be_a_literal_is_refused() {
        let settings = FalkorDbSettings::default();
        for params in [
            serde_json::json!({"a b": 1}),
            serde_json::json!({"1a": 1}),
            serde_json::json!({"m": {"a b": 1}}),
            serde_json::json!({"s": "a\u{0}b"}),
            serde_json::json!({"u": u64::MAX}),
        ] {
            let e = prepare(&settings, &request("RETURN 1", params.clone())).unwrap_err();
            assert_eq!(e.code, "invalid_params", "{params}");
        }
        for statement in ["", "  \n", "RETURN '\u{0}'"] {
            assert_eq!(
                prepare(&settings, &request(statement, serde_json::json!({}))).unwrap_err().code,
                "invalid_cypher"
            );
        }
        let long = format!("RETURN '{}'", "x".repeat(settings.max_statement_bytes));
        assert_eq!(prepare(&settings, &request(&long, serde_json::json!({}))).unwrap_err().code, "invalid_cypher");
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn nodes_and_edges_are_objects_with_their_names() {
        let schema = Schema {
            labels: vec!["Node".into(), "file".into()],
            properties: vec!["id".into(), "n".into()],
            types: vec!["calls".into()],
        };
        let node = Value::Array(vec![
            Value::Int(kind::NODE),
            Value::Array(vec![
                Value::Int(0),
                Value::Array(vec![Value::Int(0), Value::Int(1)]),
                Value::Array(vec![
                    Value::Array(vec![Value::Int(0), Value::Int(kind::STRING), bulk("a")]),
                    Value::Array(vec![Value::Int(1), Value::Int(kind::DOUBLE), bulk("1.5")]),
                ]),
            ]),
        ]);
        assert!(holds_entity(&node));
        assert_eq!(
            schema.cell(node),
            serde_json::json!({"element": "node", "internal_id": 0, "labels": ["Node", "file"],
                "properties": {"id": "a", "n": 1.5}})
        );
        let edge = Value::Array(vec![
            Value::Int(kind::EDGE),
            Value::Array(vec![
                Value::Int(3),
                Value::Int(0),
                Value::Int(0),
                Value::Int(1),
                Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(kind::STRING), bulk("r")])]),
            ]),
        ]);
        let list = Value::Array(vec![Value::Int(kind::ARRAY), Value::Array(vec![edge])]);
        assert!(holds_entity(&list));
        assert_eq!(
            schema.cell(list),
            serde_json::json!([{"element": "relationship", "internal_id": 3, "type": "calls", "start": 0, "end": 1,
                "properties": {"id": "r"}}])
        );
        let scalar = Value::Array(vec![Value::Int(kind::INTEGER), Value::Int(7)]);
        assert!(!holds_entity(&scalar));
        assert_eq!(scalar_of(&scalar), serde_json::json!(7));
    }
}
