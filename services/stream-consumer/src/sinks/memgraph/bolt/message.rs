//! Bolt messages and their framing: a request or response is one PackStream structure, sent as chunks of at most
//! 65,535 bytes (each prefixed by its big-endian length) and ended by an empty chunk. An empty chunk on its own
//! between messages is a keep-alive (NOOP) and is skipped.

use super::packstream::{DecodeError, Structure, Value};

/// Largest chunk payload (the length prefix is 16-bit).
pub const MAX_CHUNK: usize = u16::MAX as usize;

/// A request the client sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `extra`: `user_agent`, and before Bolt 5.1 the auth fields.
    Hello(Value),
    /// Bolt 5.1+: the auth map (`scheme`, `principal`, `credentials`).
    Logon(Value),
    Run {
        query: String,
        params: Value,
        extra: Value,
    },
    /// Bolt 4+: `{n: -1}` asks for every record.
    Pull(Value),
    Begin(Value),
    Commit,
    Rollback,
    Reset,
    Goodbye,
}

impl Request {
    pub fn signature(&self) -> u8 {
        match self {
            Request::Hello(_) => 0x01,
            Request::Goodbye => 0x02,
            Request::Reset => 0x0F,
            Request::Run { .. } => 0x10,
            Request::Begin(_) => 0x11,
            Request::Commit => 0x12,
            Request::Rollback => 0x13,
            Request::Pull(_) => 0x3F,
            Request::Logon(_) => 0x6A,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Request::Hello(_) => "HELLO",
            Request::Logon(_) => "LOGON",
            Request::Run { .. } => "RUN",
            Request::Pull(_) => "PULL",
            Request::Begin(_) => "BEGIN",
            Request::Commit => "COMMIT",
            Request::Rollback => "ROLLBACK",
            Request::Reset => "RESET",
            Request::Goodbye => "GOODBYE",
        }
    }

    fn structure(&self) -> Structure {
        let fields = match self {
            Request::Hello(v) | Request::Logon(v) | Request::Pull(v) | Request::Begin(v) => vec![v.clone()],
            Request::Run { query, params, extra } => {
                vec![Value::String(query.clone()), params.clone(), extra.clone()]
            }
            Request::Commit | Request::Rollback | Request::Reset | Request::Goodbye => Vec::new(),
        };
        Structure { tag: self.signature(), fields }
    }

    /// The request as it goes on the wire: chunks and the end marker, appended to `out`.
    pub fn frame(&self, out: &mut Vec<u8>) {
        let body = Value::Struct(self.structure()).to_bytes();
        for chunk in body.chunks(MAX_CHUNK) {
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&[0, 0]);
    }
}

/// A response the server sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Success(Value),
    Record(Vec<Value>),
    /// The request was not processed because an earlier one failed (until RESET).
    Ignored,
    Failure {
        code: String,
        message: String,
    },
}

/// Why bytes are not a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("bolt: unexpected response {0}")]
    Unexpected(String),
}

impl Response {
    /// Decodes one message body (chunks already joined).
    pub fn decode(body: &[u8]) -> Result<Response, ResponseError> {
        let Value::Struct(Structure { tag, mut fields }) = Value::decode(body)? else {
            return Err(ResponseError::Unexpected("not a structure".into()));
        };
        let first = if fields.is_empty() { Value::Map(Vec::new()) } else { fields.swap_remove(0) };
        Ok(match tag {
            0x70 => Response::Success(first),
            0x71 => match first {
                Value::List(values) => Response::Record(values),
                other => return Err(ResponseError::Unexpected(format!("RECORD of {other}"))),
            },
            0x7E => Response::Ignored,
            0x7F => {
                // Bolt 5.7 servers may send `neo4j_code` next to (or instead of) `code`.
                let text = |k: &str| first.get(k).and_then(Value::as_str).map(str::to_owned);
                Response::Failure {
                    code: text("code").or_else(|| text("neo4j_code")).unwrap_or_default(),
                    message: text("message").or_else(|| text("description")).unwrap_or_default(),
                }
            }
            other => return Err(ResponseError::Unexpected(format!("signature 0x{other:02X}"))),
        })
    }
}

/// Reassembles messages from chunks as bytes arrive.
#[derive(Debug, Default)]
pub struct Dechunker {
    buffer: Vec<u8>,
    message: Vec<u8>,
}

impl Dechunker {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message body, or `None` until more bytes arrive. Keep-alive chunks are skipped.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        let mut pos = 0;
        let mut found = None;
        while self.buffer.len() >= pos + 2 {
            let len = u16::from_be_bytes([self.buffer[pos], self.buffer[pos + 1]]) as usize;
            if len == 0 {
                pos += 2;
                if !self.message.is_empty() {
                    found = Some(std::mem::take(&mut self.message));
                    break;
                }
                continue;
            }
            if self.buffer.len() < pos + 2 + len {
                break;
            }
            self.message.extend_from_slice(&self.buffer[pos + 2..pos + 2 + len]);
            pos += 2 + len;
        }
        self.buffer.drain(..pos);
        found
    }

    /// Bytes held for a message not yet complete (bounded by the caller).
    pub fn held(&self) -> usize {
        self.buffer.len() + self.message.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_request_is_one_chunk_and_the_end_marker() {
        let mut wire = Vec::new();
        Request::Pull(Value::map([("n", Value::Int(-1))])).frame(&mut wire);
        assert_eq!(wire, [0x00, 0x06, 0xB1, 0x3F, 0xA1, 0x81, b'n', 0xFF, 0x00, 0x00]);
        let mut wire = Vec::new();
        Request::Goodbye.frame(&mut wire);
        assert_eq!(wire, [0x00, 0x02, 0xB0, 0x02, 0x00, 0x00]);
    }

    #[test]
    fn a_large_request_is_split_and_reassembled_across_reads() {
        let query = "x".repeat(150_000);
        let run = Request::Run {
            query: query.clone(),
            params: Value::map([("a", Value::Int(1))]),
            extra: Value::Map(Vec::new()),
        };
        let mut wire = Vec::new();
        run.frame(&mut wire);
        assert_eq!(wire[..2], [0xFF, 0xFF], "full first chunk");
        // A keep-alive before the message, and bytes arriving in odd pieces.
        let mut all = vec![0, 0];
        all.extend_from_slice(&wire);
        let mut d = Dechunker::default();
        let mut got = None;
        for piece in all.chunks(7_777) {
            d.push(piece);
            if let Some(m) = d.next_message() {
                got = Some(m);
            }
        }
        let body = got.expect("one message");
        let Value::Struct(s) = Value::decode(&body).unwrap() else { panic!("a structure") };
        assert_eq!((s.tag, s.fields[0].as_str()), (0x10, Some(query.as_str())));
        assert_eq!(d.held(), 0);
        assert_eq!(d.next_message(), None);
    }

    #[test]
    fn responses_decode_by_signature() {
        let message = |tag: u8, fields: Vec<Value>| Value::Struct(Structure { tag, fields }).to_bytes();
        let ok = message(0x70, vec![Value::map([("fields", Value::List(vec![Value::from("x")]))])]);
        assert!(matches!(Response::decode(&ok).unwrap(), Response::Success(m) if m.get("fields").is_some()));
        let rec = message(0x71, vec![Value::List(vec![Value::Int(1), Value::Null])]);
        assert_eq!(Response::decode(&rec).unwrap(), Response::Record(vec![Value::Int(1), Value::Null]));
        assert_eq!(Response::decode(&message(0x7E, vec![])).unwrap(), Response::Ignored);
        let fail = message(
            0x7F,
            vec![Value::map([
                ("code", Value::from("Neo.ClientError.Statement.SyntaxError")),
                ("message", "bad".into()),
            ])],
        );
        assert_eq!(
            Response::decode(&fail).unwrap(),
            Response::Failure { code: "Neo.ClientError.Statement.SyntaxError".into(), message: "bad".into() }
        );
        assert!(Response::decode(&message(0x55, vec![])).is_err());
        assert!(Response::decode(&[0x01]).is_err());
    }

    #[test]
    fn two_messages_in_one_read_come_out_one_at_a_time() {
        let mut wire = Vec::new();
        Request::Commit.frame(&mut wire);
        Request::Rollback.frame(&mut wire);
        let mut d = Dechunker::default();
        d.push(&wire);
        assert_eq!(d.next_message().unwrap(), [0xB0, 0x12]);
        assert_eq!(d.next_message().unwrap(), [0xB0, 0x13]);
        assert_eq!(d.next_message(), None);
    }
}
