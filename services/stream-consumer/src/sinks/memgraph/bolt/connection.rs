//! One Bolt session on a TCP connection (TLS on top for `+s`/`+ssc` URLs, see [`super::tls`]): the handshake (magic `0x6060B017`, then four proposed versions: 5.0–5.4,
//! 4.2–4.4, 4.0–4.1, none), HELLO (and LOGON from Bolt 5.1 on, where authentication left HELLO), then requests
//! written in pipelines and responses read in order. Every read and write has a deadline; a connection that missed
//! one, or broke the protocol, is not used again.

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use super::{
    message::{Dechunker, Request, Response},
    packstream::Value,
    target::BoltTarget,
    tls, BoltError,
};

/// The byte stream under a session: plain TCP or TLS over it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

const MAGIC: [u8; 4] = [0x60, 0x60, 0xB0, 0x17];

/// Proposed versions, best first: `[0, range, minor, major]` accepts `major.(minor - range) ..= major.minor`.
const PROPOSALS: [[u8; 4]; 4] = [[0, 4, 4, 5], [0, 2, 4, 4], [0, 1, 1, 4], [0, 0, 0, 0]];

/// A negotiated protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

pub struct Connection {
    stream: Box<dyn Transport>,
    dechunker: Dechunker,
    read_buf: Box<[u8]>,
    target: BoltTarget,
    pub version: Version,
    /// What the server called itself in HELLO's SUCCESS.
    pub server: String,
}

impl Connection {
    /// Connects (with TLS when the URL says so), negotiates a version and logs in. A refused TLS handshake (an
    /// unknown CA, a wrong name) is an I/O error: transient, retried like an unreachable server.
    pub async fn open(target: &BoltTarget) -> Result<Self, BoltError> {
        let address = target.address();
        let io = |e: std::io::Error| BoltError::Io(format!("{address}: {e}"));
        let connector = tls::connector(target).map_err(BoltError::Io)?;
        let connect = async {
            let tcp = TcpStream::connect(&address).await.map_err(io)?;
            tcp.set_nodelay(true).map_err(io)?;
            let mut stream: Box<dyn Transport> = match connector {
                None => Box::new(tcp),
                Some(connector) => {
                    let name = tls::server_name(target).map_err(BoltError::Io)?;
                    let tls = connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| BoltError::Io(format!("{address}: TLS handshake: {e}")))?;
                    Box::new(tls)
                }
            };
            let mut hello = MAGIC.to_vec();
            PROPOSALS.iter().for_each(|p| hello.extend_from_slice(p));
            stream.write_all(&hello).await.map_err(io)?;
            let mut answer = [0u8; 4];
            stream.read_exact(&mut answer).await.map_err(io)?;
            Ok::<_, BoltError>((stream, answer))
        };
        let (stream, answer) = timeout(target.connect_timeout, connect)
            .await
            .map_err(|_| BoltError::Io(format!("{address}: no handshake within {:?}", target.connect_timeout)))??;
        let version = match answer {
            [0, 0, 0, 0] => {
                return Err(BoltError::Protocol(format!("{address} accepts none of Bolt 5.0-5.4, 4.0-4.4")))
            }
            [0x48, 0x54, 0x54, 0x50] => return Err(BoltError::Protocol(format!("{address} is an HTTP server"))),
            [_, _, minor, major] => Version { major, minor },
        };
        let mut conn = Self {
            stream,
            dechunker: Dechunker::default(),
            read_buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            target: target.clone(),
            version,
            server: String::new(),
        };
        conn.login().await?;
        Ok(conn)
    }

    async fn login(&mut self) -> Result<(), BoltError> {
        let target = self.target.clone();
        let mut extra = vec![("user_agent".to_owned(), Value::from(target.user_agent.as_str()))];
        if self.version >= (Version { major: 5, minor: 3 }) {
            extra.push(("bolt_agent".into(), Value::map([("product", Value::from(target.user_agent.as_str()))])));
        }
        let auth = auth_fields(&target);
        let logon_apart = self.version >= Version { major: 5, minor: 1 };
        if !logon_apart {
            extra.extend(auth.clone());
        }
        self.send(&[Request::Hello(Value::Map(extra))]).await?;
        let hello = self.summary("HELLO").await?;
        self.server = hello.get("server").and_then(Value::as_str).unwrap_or_default().to_owned();
        if logon_apart {
            self.send(&[Request::Logon(Value::Map(auth))]).await?;
            self.summary("LOGON").await?;
        }
        Ok(())
    }

    /// Writes `requests` in one go (a pipeline); their responses come back in the same order.
    pub async fn send(&mut self, requests: &[Request]) -> Result<(), BoltError> {
        let mut wire = Vec::new();
        for r in requests {
            r.frame(&mut wire);
        }
        let deadline = self.target.io_timeout;
        match timeout(deadline, self.stream.write_all(&wire)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BoltError::Io(format!("write: {e}"))),
            Err(_) => Err(BoltError::Io(format!("write: no progress within {deadline:?}"))),
        }
    }

    /// The next response.
    pub async fn receive(&mut self) -> Result<Response, BoltError> {
        loop {
            if let Some(body) = self.dechunker.next_message() {
                return Response::decode(&body).map_err(|e| BoltError::Protocol(e.to_string()));
            }
            if self.dechunker.held() > self.target.max_message_bytes {
                return Err(BoltError::Protocol(format!(
                    "a response message exceeds {} bytes",
                    self.target.max_message_bytes
                )));
            }
            let deadline = self.target.io_timeout;
            let n = match timeout(deadline, self.stream.read(&mut self.read_buf)).await {
                Ok(Ok(0)) => return Err(BoltError::Io("the server closed the connection".into())),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(BoltError::Io(format!("read: {e}"))),
                Err(_) => return Err(BoltError::Io(format!("read: no answer within {deadline:?}"))),
            };
            self.dechunker.push(&self.read_buf[..n]);
        }
    }

    /// The response to `request` when only a SUCCESS is expected; its metadata.
    pub async fn summary(&mut self, request: &str) -> Result<Value, BoltError> {
        match self.receive().await? {
            Response::Success(meta) => Ok(meta),
            Response::Failure { code, message } => {
                Err(BoltError::Failure { request: request.to_owned(), code, message })
            }
            Response::Ignored => Err(BoltError::Ignored(request.to_owned())),
            Response::Record(_) => Err(BoltError::Protocol(format!("RECORD in answer to {request}"))),
        }
    }

    /// Clears a failed state (and rolls back an open transaction). `pending`: requests sent before whose answers
    /// are still due. A server answers them with IGNORED, then RESET with SUCCESS; FalkorDB leaves a PULL after a
    /// failed RUN unanswered and answers RESET with IGNORED then SUCCESS, so IGNOREDs are skipped up to a bound.
    pub async fn reset(&mut self, pending: usize) -> Result<(), BoltError> {
        self.send(&[Request::Reset]).await?;
        for _ in 0..pending + 2 {
            match self.receive().await? {
                Response::Success(_) => return Ok(()),
                Response::Ignored => continue,
                Response::Failure { code, message } => {
                    return Err(BoltError::Failure { request: "RESET".into(), code, message })
                }
                Response::Record(_) => return Err(BoltError::Protocol("RECORD in answer to RESET".into())),
            }
        }
        Err(BoltError::Protocol("RESET was never answered with SUCCESS".into()))
    }

    /// Says goodbye (the server closes the connection; nothing is answered).
    pub async fn goodbye(mut self) {
        let _ = self.send(&[Request::Goodbye]).await;
        let _ = self.stream.shutdown().await;
    }
}

/// `scheme`, `principal`, `credentials` in the order servers read them; `scheme: none` without credentials.
fn auth_fields(target: &BoltTarget) -> Vec<(String, Value)> {
    match &target.auth {
        Some(c) => vec![
            ("scheme".into(), Value::from("basic")),
            ("principal".into(), Value::from(c.principal.as_str())),
            ("credentials".into(), Value::from(c.credentials.as_str())),
        ],
        None => vec![("scheme".into(), Value::from("none"))],
    }
}
