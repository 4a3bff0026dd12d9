//! The WebSocket protocol of the gateway: what a client may send, the control messages it gets, close codes.
//!
//! Events go out as one text frame per stream entry: the CDC envelope itself, a change set
//! (`"type":"change_set"`) or a single event, as published. A filter applies per change: a client whose filter
//! keeps only some changes of a set gets a `change_set` frame of those, in order, each with `"index"` (its
//! position in the entry), and one that keeps none gets nothing for that entry (see `filter.rs`). Resume points
//! are entry ids. Everything else is a JSON object with a `type`: client → gateway `ping`, `subscribe` (filtered
//! endpoint), `resume`; gateway → client `pong`, `subscribed`, `resync_required`, `error`, `status`.

use std::collections::BTreeMap;

use codegraph_shared::event::StreamId;
use serde::Serialize;
use serde_json::{json, Value};

/// Why the gateway closes a connection, and the close code that tells the client what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The gateway is draining (restart, scale-down): reconnect, to any replica, and resume.
    Restart,
    /// The client did not keep up (outbox full): reconnect and resume.
    TooSlow,
    /// The client's position is no longer in the stream: load a snapshot, then resume from its id.
    ResyncRequired,
    /// A malformed request: do not reconnect as is.
    BadRequest,
    /// No token, or one the gateway does not know.
    Unauthorized,
    /// A valid token without the read scope.
    Forbidden,
    /// A browser page of another origin, not listed.
    ForbiddenOrigin,
    MessageTooBig,
    /// The client went away or stopped answering; nothing is sent.
    Gone,
}

impl CloseReason {
    pub fn code(self) -> u16 {
        match self {
            Self::Restart => 1012,
            Self::TooSlow => 4008,
            Self::ResyncRequired => 4009,
            Self::BadRequest => 4400,
            Self::Unauthorized => 4401,
            Self::Forbidden | Self::ForbiddenOrigin => 4403,
            Self::MessageTooBig => 4413,
            Self::Gone => 1001,
        }
    }

    pub fn default_text(self) -> &'static str {
        match self {
            Self::Restart => "gateway restarting: reconnect and resume",
            Self::TooSlow => "too slow: reconnect and resume",
            Self::ResyncRequired => "resync required: the stream no longer holds your position",
            Self::BadRequest => "bad request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::ForbiddenOrigin => "origin not allowed",
            Self::MessageTooBig => "message too big",
            Self::Gone => "going away",
        }
    }

    /// Queued events still go out before the close frame, except to a client that is cut for being slow.
    pub fn flushes_outbox(self) -> bool {
        !matches!(self, Self::TooSlow | Self::Gone)
    }
}

/// A message from a client, after validation of its shape (not of its content).
#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    Ping,
    /// `{"type":"subscribe","filter":{…},"since":{project: id}?}`
    Subscribe {
        filter: Value,
        since: BTreeMap<String, String>,
    },
    /// `{"type":"resume","since":{project: id}}`
    Resume {
        since: BTreeMap<String, String>,
    },
}

/// Why a client message was refused; sent back as an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: &'static str,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl ClientMessage {
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ProtocolError::new("invalid_json", format!("not JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(ProtocolError::new("invalid_message", "a message is a JSON object with a \"type\""));
        };
        let kind = match obj.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(ProtocolError::new("invalid_message", "a message needs a string \"type\"")),
        };
        match kind.as_str() {
            "ping" => Ok(Self::Ping),
            "subscribe" => {
                let filter = obj.remove("filter").unwrap_or_else(|| json!({}));
                let since = match obj.remove("since") {
                    None | Some(Value::Null) => BTreeMap::new(),
                    Some(v) => since_map(v)?,
                };
                Ok(Self::Subscribe { filter, since })
            }
            "resume" => {
                let since = obj.remove("since").ok_or_else(|| {
                    ProtocolError::new("invalid_message", "resume needs \"since\": {\"<project>\": \"<stream id>\"}")
                })?;
                Ok(Self::Resume { since: since_map(since)? })
            }
            other => Err(ProtocolError::new(
                "unknown_type",
                format!("unknown message type {:?}: expected ping, subscribe or resume", clip(other)),
            )),
        }
    }
}

fn since_map(v: Value) -> Result<BTreeMap<String, String>, ProtocolError> {
    serde_json::from_value(v)
        .map_err(|_| ProtocolError::new("invalid_since", "\"since\" is an object of project → stream id strings"))
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[derive(Serialize)]
struct ErrorMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
}

pub fn pong() -> &'static str {
    r#"{"type":"pong"}"#
}

pub fn error(e: &ProtocolError) -> String {
    serde_json::to_string(&ErrorMessage { kind: "error", code: e.code, message: &e.message }).unwrap_or_default()
}

/// Sent when a client's position is older than the stream retains (or unknown to it); a 4009 close follows.
pub fn resync_required(project: &str, since: StreamId, oldest: Option<StreamId>, reason: &str) -> String {
    json!({
        "type": "resync_required",
        "project": project,
        "since": since,
        "oldest": oldest,
        "reason": reason,
    })
    .to_string()
}

/// Acknowledges a subscription once live events of every project in it flow to the client.
pub fn subscribed(filter: &Value) -> String {
    json!({"type": "subscribed", "filter": filter}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_messages() {
        assert_eq!(ClientMessage::parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        let m = ClientMessage::parse(r#"{"type":"resume","since":{"p":"1-0"}}"#).unwrap();
        assert_eq!(m, ClientMessage::Resume { since: BTreeMap::from([("p".into(), "1-0".into())]) });
        let m = ClientMessage::parse(r#"{"type":"subscribe","filter":{"projects":["p"]}}"#).unwrap();
        assert!(matches!(m, ClientMessage::Subscribe { since, .. } if since.is_empty()));
    }

    #[test]
    fn refusals_name_their_cause() {
        let code = |t: &str| ClientMessage::parse(t).unwrap_err().code;
        assert_eq!(code("{nope"), "invalid_json");
        assert_eq!(code("[1]"), "invalid_message");
        assert_eq!(code(r#"{"type":1}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"resume"}"#), "invalid_message");
        assert_eq!(code(r#"{"type":"resume","since":"1-0"}"#), "invalid_since");
    }

    #[test]
    fn control_messages_are_json() {
        let e: Value = serde_json::from_str(&error(&ProtocolError::new("x", "say \"why\""))).unwrap();
        assert_eq!(e["message"], "say \"why\"");
        let r: Value = serde_json::from_str(&resync_required("p", StreamId::new(1, 0), None, "trimmed")).unwrap();
        assert_eq!((r["type"].as_str(), r["since"].as_str()), (Some("resync_required"), Some("1-0")));
        assert_eq!(CloseReason::TooSlow.code(), 4008);
    }
}
