//! Resource subscriptions — `resources/subscribe` (protocol versions up to 2025-11-25) and the resource URIs of a
//! `subscriptions/listen` (2026-07-28): a subscribed resource's project is followed on its CDC Pub/Sub channel,
//! and every graph change sends `notifications/resources/updated` — at once for the first change, then at most one per
//! [`COALESCE`] while changes keep coming (an analysis writing thousands of change sets sends a few
//! notifications, the last one after its last change). No polling: the notification is driven by the events.
//!
//! Pub/Sub is at-most-once: a lost connection (or a subscription the server ended) is followed by a
//! notification once resubscribed, since a change may have been missed in between.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use codegraph_shared::{
    functions::PublishMode,
    names::RedisNames,
    project::ProjectName,
    pubsub::{Incoming, Subscription},
    redis_handle::RedisHandle,
};
use rmcp::{model::ResourceUpdatedNotificationParam, service::SubscriptionSink, ErrorData, Peer, RoleServer};
use tokio::task::JoinHandle;

use super::resources::ResourceUri;
use crate::state::AppState;

/// Shortest time between two notifications of one subscription.
const COALESCE: Duration = Duration::from_millis(200);
/// Longest wait before reconnecting a lost Pub/Sub connection.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// Most resources one session (or one `subscriptions/listen`) follows: each is a Pub/Sub connection to Redis.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// Where a subscription's notifications go.
#[derive(Clone)]
pub enum Subscriber {
    /// The session that sent `resources/subscribe`.
    Session(Peer<RoleServer>),
    /// The stream of one `subscriptions/listen` request (it stamps the subscription id on each notification).
    Listen(SubscriptionSink),
}

impl Subscriber {
    /// False once the client cannot be reached any more.
    async fn notify(&self, uri: &str) -> bool {
        let sent = match self {
            Self::Session(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .map_err(|e| e.to_string()),
            Self::Listen(sink) => sink.notify_resource_updated(uri).await.map_err(|e| e.to_string()),
        };
        match sent {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, uri, "the subscriber is gone; ending its subscription");
                false
            }
        }
    }

    fn is_gone(&self) -> bool {
        match self {
            Self::Session(peer) => peer.is_transport_closed(),
            // Ended with its request, which aborts the task.
            Self::Listen(_) => false,
        }
    }
}

/// A Pub/Sub subscription to the project's event channel (`SUBSCRIBE`, or `SSUBSCRIBE` where events are
/// published sharded). The one place that knows how, so a topology change touches only this function.
pub async fn subscribe_project(redis: &RedisHandle, project: &ProjectName) -> Result<Subscription, redis::RedisError> {
    let mut subscription = Subscription::connect(redis, redis.publish_mode() == PublishMode::Sharded).await?;
    subscription.subscribe(&[RedisNames::new(project).events_channel()]).await?;
    Ok(subscription)
}

/// Whether an event envelope (as published) changes the graph: everything but the analysis jobs' own events.
/// A payload that cannot be read counts as a change (a spurious notification is harmless, a missed one is not).
pub fn changes_graph(payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, rename = "type")]
        event_type: Option<&'a str>,
    }
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(Envelope { event_type: Some(t) }) => !t.starts_with("analysis_"),
        _ => true,
    }
}

/// The subscriptions of one session (or one `subscriptions/listen`), by URI.
#[derive(Default)]
pub struct Watches {
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Watches {
    /// Subscribes before answering, so every change after the answer is noticed. Subscribing again to the same
    /// URI is a no-op; more than [`MAX_SUBSCRIPTIONS`] URIs is refused.
    pub async fn subscribe(&self, state: &AppState, uri: ResourceUri, subscriber: Subscriber) -> Result<(), ErrorData> {
        let key = uri.uri();
        {
            let mut tasks = self.tasks.lock().expect("watch lock");
            tasks.retain(|_, task| !task.is_finished());
            if tasks.contains_key(&key) {
                return Ok(());
            }
            if tasks.len() >= MAX_SUBSCRIPTIONS {
                return Err(ErrorData::invalid_request(
                    format!("at most {MAX_SUBSCRIPTIONS} resource subscriptions at once: unsubscribe from one first"),
                    None,
                ));
            }
        }
        let subscription = subscribe_project(&state.redis, &uri.project).await.map_err(|e| {
            tracing::warn!(error = %e, uri = %key, "cannot subscribe to the project's events");
            ErrorData::internal_error("cannot subscribe to the project's events now (Redis unavailable)", None)
        })?;
        let task = tokio::spawn(follow(state.redis.clone(), uri, subscription, subscriber));
        if let Some(old) = self.tasks.lock().expect("watch lock").insert(key, task) {
            old.abort();
        }
        Ok(())
    }

    pub fn unsubscribe(&self, uri: &str) {
        if let Some(task) = self.tasks.lock().expect("watch lock").remove(uri) {
            task.abort();
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().expect("watch lock").values() {
            task.abort();
        }
    }
}

/// Sends the coalesced notifications of one subscription until the client is gone.
async fn follow(redis: RedisHandle, uri: ResourceUri, mut subscription: Subscription, subscriber: Subscriber) {
    let text = uri.uri();
    let mut pending = false;
    let mut quiet_until = Instant::now();
    loop {
        let incoming = tokio::select! {
            incoming = subscription.next() => incoming,
            _ = tokio::time::sleep_until(quiet_until.into()), if pending => {
                if !subscriber.notify(&text).await {
                    return;
                }
                pending = false;
                quiet_until = Instant::now() + COALESCE;
                continue;
            }
        };
        match incoming {
            Incoming::Message { payload, .. } if changes_graph(&payload) => pending = true,
            Incoming::Message { .. } | Incoming::Other => {}
            Incoming::Unsubscribed(_) | Incoming::Lost(_) => {
                tracing::debug!(uri = %text, "the Pub/Sub subscription was lost; resubscribing");
                subscription = resubscribe(&redis, &uri.project, &subscriber).await;
                // A change may have been published while no subscription was there.
                pending = true;
            }
        }
        if pending && Instant::now() >= quiet_until {
            if !subscriber.notify(&text).await {
                return;
            }
            pending = false;
            quiet_until = Instant::now() + COALESCE;
        }
    }
}

async fn resubscribe(redis: &RedisHandle, project: &ProjectName, subscriber: &Subscriber) -> Subscription {
    let mut delay = Duration::from_millis(50);
    loop {
        match subscribe_project(redis, project).await {
            Ok(s) => return s,
            Err(e) => tracing::warn!(error = %e, %project, "cannot resubscribe to the project's events; retrying"),
        }
        if subscriber.is_gone() {
            // Nobody to notify any more: park until the task is aborted with its session.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::changes_graph;

    #[test]
    fn job_events_are_not_graph_changes() {
        assert!(!changes_graph(br#"{"id":"1-0","type":"analysis_progress","data":{}}"#));
        assert!(changes_graph(br#"{"id":"1-0","type":"node_added","data":{}}"#));
        assert!(changes_graph(br#"{"id":"1-0","changes":[]}"#));
        assert!(changes_graph(b"not json"));
    }
}
