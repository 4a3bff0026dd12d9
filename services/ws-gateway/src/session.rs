//! One WebSocket connection from upgrade to close: registers the client, starts its writer, follows the projects
//! it asked for (live or resuming), and reads what the client sends (ping, subscribe, resume) until either side
//! ends the connection.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::extract::ws::{Message, WebSocket};
use codegraph_shared::{event::StreamId, project::ProjectName};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::{
    client::{Client, Endpoint},
    filter::EventFilter,
    gateway::Gateway,
    protocol::{self, ClientMessage, CloseReason, ProtocolError},
    writer,
};

/// After this many refused messages the client is closed with 4400.
const MAX_ERRORS: u32 = 20;
/// How long the reader keeps reading (and discarding) after the close frame went out, so the client's close
/// reply is read instead of reset.
const LINGER: Duration = Duration::from_secs(2);

/// What the upgrade request asked for, or why it is refused (the refusal is sent as a close frame).
#[derive(Debug)]
pub enum Opening {
    Serve { endpoint: Endpoint, projects: Vec<ProjectName>, since: Option<StreamId> },
    Refuse(CloseReason, String),
}

struct Session {
    gw: Arc<Gateway>,
    client: Arc<Client>,
    errors: u32,
}

/// Runs the connection. `_permit` is the connection's slot under the connection limit.
pub async fn run(socket: WebSocket, gw: Arc<Gateway>, opening: Opening, _permit: OwnedSemaphorePermit) {
    let endpoint = match &opening {
        Opening::Serve { endpoint, .. } => *endpoint,
        Opening::Refuse(..) => Endpoint::Events,
    };
    let filter = match &opening {
        Opening::Serve { projects, .. } => EventFilter::projects_only(projects.clone()),
        Opening::Refuse(..) => EventFilter::projects_only(Vec::new()),
    };
    let client = Arc::new(Client::new(
        gw.registry.next_id(),
        endpoint,
        gw.settings.outbox_max_bytes,
        filter,
        gw.stats.clone(),
        gw.budget.clone(),
    ));
    gw.registry.insert(client.clone());
    gw.stats.connection_opened();
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(writer::run(client.clone(), sink, gw.keepalive(), gw.stats.clone()));
    let mut session = Session { gw: gw.clone(), client: client.clone(), errors: 0 };
    match opening {
        Opening::Refuse(reason, text) => {
            client.close(reason, Some(text));
        }
        Opening::Serve { .. } if gw.shutdown.is_triggered() => {
            client.close(CloseReason::Restart, None);
        }
        Opening::Serve { endpoint: Endpoint::Status, .. } => session.push_status(),
        Opening::Serve { endpoint: Endpoint::Filtered, .. } => {}
        Opening::Serve { endpoint: Endpoint::Events, projects, since } => {
            for p in &projects {
                session.follow(p, since);
            }
            session.acknowledge(&projects, serde_json::json!({"projects": projects}));
        }
    }

    let mut writer_done = false;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(msg)) => session.on_message(msg),
                Some(Err(e)) => {
                    tracing::debug!(client = client.id(), error = %e, "read failed");
                    client.close(CloseReason::Gone, None);
                    break;
                }
                None => break,
            },
            _ = &mut writer, if !writer_done => {
                writer_done = true;
                // Read the client's close reply (or whatever is still in flight) for a moment, then hang up.
                let _ = tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = stream.next().await {} }).await;
                break;
            }
        }
    }
    client.close(CloseReason::Gone, None);
    if !writer_done && tokio::time::timeout(LINGER, &mut writer).await.is_err() {
        writer.abort();
    }
    for p in client.projects() {
        gw.hub.leave(client.id(), &p);
    }
    gw.registry.remove(client.id());
    gw.stats.connection_closed();
}

impl Session {
    /// Follows `project`: live from now, or replayed from `since` and then live.
    fn follow(&self, project: &ProjectName, since: Option<StreamId>) {
        let joined = self.client.follows(project);
        let generation = self.client.start_feed(project, since);
        if !joined {
            self.gw.hub.join(&self.client, project);
        }
        if let (Some(generation), Some(since)) = (generation, since) {
            self.gw.replayer.spawn(self.client.clone(), project.clone(), since, generation);
        }
    }

    fn unfollow(&self, project: &ProjectName) {
        self.gw.hub.leave(self.client.id(), project);
        self.client.stop_feed(project);
    }

    /// Sends `{"type":"subscribed",…}` once live events of every project flow to the client.
    fn acknowledge(&self, projects: &[ProjectName], filter: serde_json::Value) {
        let waits: Vec<_> = projects.iter().map(|p| self.gw.hub.when_active(p)).collect();
        let client = self.client.clone();
        tokio::spawn(async move {
            for w in waits {
                if w.await.is_err() {
                    return;
                }
            }
            client.send_control(protocol::subscribed(&filter));
        });
    }

    fn push_status(&self) {
        let client = self.client.clone();
        let gw = self.gw.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(gw.settings.status_interval());
            loop {
                tick.tick().await;
                if client.closing().is_some() {
                    return;
                }
                let status = gw.status();
                client.send_control(serde_json::json!({"type": "status", "status": status}).to_string());
            }
        });
    }

    fn on_message(&mut self, msg: Message) {
        self.client.heard();
        match msg {
            Message::Text(text) => {
                if text.len() > self.gw.settings.max_message_bytes {
                    let why = format!("messages are limited to {} bytes", self.gw.settings.max_message_bytes);
                    self.client.close(CloseReason::MessageTooBig, Some(why));
                    return;
                }
                if let Err(e) = self.on_text(text.as_str()) {
                    self.refuse(e);
                }
            }
            Message::Binary(_) => {
                let why = "binary frames are not part of the protocol; send JSON text".to_owned();
                self.client.close(CloseReason::BadRequest, Some(why));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
        }
    }

    fn refuse(&mut self, e: ProtocolError) {
        self.errors += 1;
        self.client.send_control(protocol::error(&e));
        if self.errors >= MAX_ERRORS {
            self.client.close(CloseReason::BadRequest, Some(format!("{MAX_ERRORS} refused messages")));
        }
    }

    fn on_text(&mut self, text: &str) -> Result<(), ProtocolError> {
        match ClientMessage::parse(text)? {
            ClientMessage::Ping => {
                self.client.send_control(protocol::pong().to_owned());
                Ok(())
            }
            ClientMessage::Subscribe { filter, since } => self.on_subscribe(filter, since),
            ClientMessage::Resume { since } => self.on_resume(since),
        }
    }

    fn on_subscribe(
        &mut self,
        filter: serde_json::Value,
        since: BTreeMap<String, String>,
    ) -> Result<(), ProtocolError> {
        if self.client.endpoint() != Endpoint::Filtered {
            return Err(ProtocolError::new("unsupported", "subscribe is for /ws/events/filtered"));
        }
        let filter = EventFilter::from_json(filter).map_err(|e| ProtocolError::new("bad_filter", e.0))?;
        let since = parse_since(&since, filter.projects())?;
        let wanted = filter.projects().to_vec();
        for p in self.client.projects() {
            if !wanted.contains(&p) {
                self.unfollow(&p);
            }
        }
        let ack = filter.to_json();
        self.client.set_filter(filter);
        for p in &wanted {
            let resume = since.get(p).copied();
            if resume.is_some() || !self.client.follows(p) {
                self.follow(p, resume);
            }
        }
        self.acknowledge(&wanted, ack);
        Ok(())
    }

    fn on_resume(&mut self, since: BTreeMap<String, String>) -> Result<(), ProtocolError> {
        if since.is_empty() {
            return Err(ProtocolError::new("invalid_since", "resume names no project"));
        }
        let followed = self.client.projects();
        let since = parse_since(&since, &followed)?;
        for (p, id) in since {
            self.follow(&p, Some(id));
        }
        Ok(())
    }
}

/// Validates a `since` map: known projects only, valid stream ids.
fn parse_since(
    since: &BTreeMap<String, String>,
    followed: &[ProjectName],
) -> Result<BTreeMap<ProjectName, StreamId>, ProtocolError> {
    since
        .iter()
        .map(|(p, id)| {
            let project = ProjectName::parse(p).map_err(|e| ProtocolError::new("invalid_since", e.to_string()))?;
            if !followed.contains(&project) {
                return Err(ProtocolError::new(
                    "not_subscribed",
                    format!("project {project} is not part of the subscription"),
                ));
            }
            let id: StreamId = id.parse().map_err(|e: codegraph_shared::event::InvalidStreamId| {
                ProtocolError::new("invalid_since", e.to_string())
            })?;
            Ok((project, id))
        })
        .collect()
}
