//! A Bolt client over one lazily opened connection: auto-commit queries (RUN + PULL, written together) and batch
//! transactions (BEGIN, RUN + PULL per statement, COMMIT). A FAILURE is answered with RESET, which
//! clears the failed state and rolls the transaction back, so the connection stays usable; a connection that
//! broke (I/O, deadline, protocol) is dropped and the next call opens a new one.

use tokio::sync::Mutex;
use tracing::{debug, warn};

use super::{
    connection::{Connection, Version},
    message::{Request, Response},
    packstream::Value,
    target::BoltTarget,
    BoltError,
};

/// The records and field names of one query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryResult {
    pub fields: Vec<String>,
    pub records: Vec<Vec<Value>>,
}

/// One statement of a transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub query: String,
    /// A map.
    pub params: Value,
}

pub struct BoltClient {
    target: BoltTarget,
    conn: Mutex<Option<Connection>>,
}

impl BoltClient {
    pub fn new(target: BoltTarget) -> Self {
        Self { target, conn: Mutex::new(None) }
    }

    pub fn target(&self) -> &BoltTarget {
        &self.target
    }

    /// The negotiated version and server name (connecting if needed).
    pub async fn server(&self) -> Result<(Version, String), BoltError> {
        self.with_connection(|c| Box::pin(async move { Ok((c.version, c.server.clone())) })).await
    }

    /// Runs one auto-commit query and returns every record.
    pub async fn run(&self, query: &str, params: Value) -> Result<QueryResult, BoltError> {
        let query = query.to_owned();
        self.with_connection(move |c| {
            Box::pin(async move {
                c.send(&[run(query, params), pull()]).await?;
                let mut pending = 2;
                let mut result = QueryResult::default();
                let outcome = read_query(c, &mut pending, Some(&mut result)).await;
                finish(c, outcome, pending).await.map(|()| result)
            })
        })
        .await
    }

    /// Runs `statements` in one explicit transaction: all of them are committed, or none. Each statement waits
    /// for the previous one's answer, so after a failure nothing more was sent and only RESET is due.
    pub async fn transaction(&self, statements: &[Statement]) -> Result<(), BoltError> {
        self.guarded_transaction(None, statements).await.map(|_| ())
    }

    /// Like [`Self::transaction`], first running `guard` in the same transaction: when its first record's first
    /// value is not `true` (or 1), the transaction is rolled back before anything else is sent, and the answer
    /// is `Ok(false)`.
    pub async fn guarded_transaction(
        &self,
        guard: Option<Statement>,
        statements: &[Statement],
    ) -> Result<bool, BoltError> {
        let statements = statements.to_vec();
        self.with_connection(move |c| {
            Box::pin(async move {
                let mut pending = 0;
                let outcome = async {
                    c.send(&[Request::Begin(Value::Map(Vec::new()))]).await?;
                    c.summary("BEGIN").await?;
                    if let Some(g) = guard {
                        c.send(&[run(g.query, g.params), pull()]).await?;
                        pending = 2;
                        let mut result = QueryResult::default();
                        read_query(c, &mut pending, Some(&mut result)).await?;
                        let passed = matches!(
                            result.records.first().and_then(|r| r.first()),
                            Some(Value::Bool(true) | Value::Int(1))
                        );
                        if !passed {
                            c.send(&[Request::Rollback]).await?;
                            c.summary("ROLLBACK").await?;
                            return Ok(false);
                        }
                    }
                    for s in statements {
                        c.send(&[run(s.query, s.params), pull()]).await?;
                        pending = 2;
                        read_query(c, &mut pending, None).await?;
                    }
                    c.send(&[Request::Commit]).await?;
                    c.summary("COMMIT").await.map(|_| true)
                }
                .await;
                match outcome {
                    Ok(passed) => Ok(passed),
                    Err(e) => finish(c, Err(e), pending).await.map(|()| false),
                }
            })
        })
        .await
    }

    /// Says GOODBYE and closes the connection (if one is open).
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            conn.goodbye().await;
        }
    }

    async fn with_connection<T>(
        &self,
        op: impl for<'c> FnOnce(
            &'c mut Connection,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BoltError>> + Send + 'c>>,
    ) -> Result<T, BoltError> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            let conn = Connection::open(&self.target).await?;
            debug!(server = %conn.server, version = %conn.version, address = %self.target.address(), "bolt connected");
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected above");
        let result = op(conn).await;
        if let Err(e) = &result {
            if e.breaks_connection() {
                warn!(error = %e, "dropping the bolt connection; the next call reconnects");
                *slot = None;
            }
        }
        result
    }
}

fn run(query: String, params: Value) -> Request {
    Request::Run { query, params, extra: Value::Map(Vec::new()) }
}

fn pull() -> Request {
    Request::Pull(Value::map([("n", Value::Int(-1))]))
}

/// Reads the answers to one RUN + PULL: the RUN's SUCCESS (field names), the records, the PULL's SUCCESS.
async fn read_query(
    c: &mut Connection,
    pending: &mut usize,
    mut result: Option<&mut QueryResult>,
) -> Result<(), BoltError> {
    *pending -= 1;
    let meta = c.summary("RUN").await?;
    if let (Some(r), Some(Value::List(fields))) = (result.as_deref_mut(), meta.get("fields")) {
        r.fields = fields.iter().filter_map(|f| f.as_str().map(str::to_owned)).collect();
    }
    loop {
        match c.receive().await? {
            Response::Record(values) => {
                if let Some(r) = result.as_deref_mut() {
                    r.records.push(values);
                }
            }
            Response::Success(_) => {
                *pending -= 1;
                return Ok(());
            }
            Response::Failure { code, message } => {
                *pending -= 1;
                return Err(BoltError::Failure { request: "PULL".into(), code, message });
            }
            Response::Ignored => {
                *pending -= 1;
                return Err(BoltError::Ignored("PULL".into()));
            }
        }
    }
}

/// After a FAILURE the answers still due are IGNORED; they are read, then RESET brings the session back.
async fn finish(c: &mut Connection, outcome: Result<(), BoltError>, pending: usize) -> Result<(), BoltError> {
    match outcome {
        Err(e @ (BoltError::Failure { .. } | BoltError::Ignored(_))) => {
            c.reset(pending).await.map_err(|r| BoltError::Protocol(format!("RESET after {e}: {r}")))?;
            Err(e)
        }
        other => other,
    }
}
