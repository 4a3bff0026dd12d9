//! Pub/Sub on either topology (see [`Subscription`]).

use futures_util::StreamExt;
use redis::{
    aio::{PubSubSink, PubSubStream},
    cluster_async::ClusterConnection,
    PushKind, RedisError,
};

use crate::redis_handle::{PushReceiver, RedisHandle};

/// What a [`Subscription`] delivers.
pub enum Incoming {
    Message {
        channel: String,
        payload: Vec<u8>,
    },
    /// The server ended a subscription (on a cluster: its slot moved), or a confirmation of our own unsubscribe.
    Unsubscribed(String),
    /// Subscription confirmations and the like.
    Other,
    Lost(String),
}

/// A Pub/Sub connection on either topology: `SUBSCRIBE` on a single Redis; on a cluster, `SSUBSCRIBE` at the node
/// that owns each channel's slot (`sharded`, the cluster default for event channels) or `SUBSCRIBE` (classic
/// channels, which every node relays). It reports any sign of a lost message (a node connection dropped:
/// [`Incoming::Lost`]; a subscription the server ended: [`Incoming::Unsubscribed`]); what it means is the caller's
/// to decide (the gateway starts over and fills each room's gap from its stream).
pub enum Subscription {
    Single { sink: PubSubSink, stream: PubSubStream },
    Cluster { conn: ClusterConnection, pushes: PushReceiver, sharded: bool },
}

impl Subscription {
    /// True on a cluster, where one node's trouble leaves the others' subscriptions working.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    pub async fn connect(redis: &RedisHandle, sharded: bool) -> Result<Self, RedisError> {
        if let Some(connected) = redis.cluster_pubsub().await {
            let (conn, pushes) = connected?;
            return Ok(Self::Cluster { conn, pushes, sharded });
        }
        let client = redis.single_client().expect("a handle is a cluster or a single Redis");
        let (sink, stream) = client.get_async_pubsub().await?.split();
        Ok(Self::Single { sink, stream })
    }

    pub async fn subscribe(&mut self, channels: &[String]) -> Result<(), RedisError> {
        match self {
            Self::Single { sink, .. } => sink.subscribe(channels).await,
            Self::Cluster { conn, sharded, .. } => {
                for channel in channels {
                    match sharded {
                        true => conn.ssubscribe(channel).await?,
                        false => conn.subscribe(channel).await?,
                    }
                }
                Ok(())
            }
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), RedisError> {
        match self {
            Self::Single { sink, .. } => sink.unsubscribe(channel).await,
            Self::Cluster { conn, sharded: true, .. } => conn.sunsubscribe(channel).await,
            Self::Cluster { conn, sharded: false, .. } => conn.unsubscribe(channel).await,
        }
    }

    pub async fn ping(&mut self) -> Result<(), RedisError> {
        match self {
            Self::Single { sink, .. } => sink.ping::<redis::Value>().await.map(drop),
            Self::Cluster { conn, .. } => redis::cmd("PING").query_async::<redis::Value>(conn).await.map(drop),
        }
    }

    pub async fn next(&mut self) -> Incoming {
        match self {
            Self::Single { stream, .. } => match stream.next().await {
                Some(msg) => Incoming::Message {
                    channel: msg.get_channel_name().to_owned(),
                    payload: msg.get_payload_bytes().to_vec(),
                },
                None => Incoming::Lost("connection closed".into()),
            },
            Self::Cluster { pushes, .. } => {
                let Some(push) = pushes.recv().await else { return Incoming::Lost("connection closed".into()) };
                let text = |i: usize| push.data.get(i).and_then(|v| redis::from_redis_value_ref::<Vec<u8>>(v).ok());
                match push.kind {
                    PushKind::Message | PushKind::SMessage => match (text(0), text(1)) {
                        (Some(channel), Some(payload)) => {
                            Incoming::Message { channel: String::from_utf8_lossy(&channel).into_owned(), payload }
                        }
                        _ => Incoming::Other,
                    },
                    PushKind::SUnsubscribe | PushKind::Unsubscribe => match text(0) {
                        Some(channel) => Incoming::Unsubscribed(String::from_utf8_lossy(&channel).into_owned()),
                        None => Incoming::Other,
                    },
                    PushKind::Disconnection => Incoming::Lost("a cluster node connection dropped".into()),
                    _ => Incoming::Other,
                }
            }
        }
    }
}
