//! The fan-out: one Redis Pub/Sub connection per gateway process, multiplexing every project that has clients
//! here, and one room per project listing those clients.
//!
//! A project's channel is SUBSCRIBEd when its first client arrives and UNSUBSCRIBEd when its last one leaves.
//! Plain per-channel SUBSCRIBE rather than one PSUBSCRIBE `code_graph:*:events`: this process then only receives
//! projects somebody here watches, Redis matches no pattern against every publication of every project, and the
//! same shape maps onto SSUBSCRIBE (sharded channels) on a cluster.
//!
//! Gap-free by construction: when a room is created the gateway notes the stream's last generated id (its
//! baseline) *before* subscribing; after every (re)subscription it reads the stream from the newest id it has
//! dispatched (or the baseline) and dispatches what it finds, then carries on with the live messages, dropping
//! any id not newer than the last one dispatched. So a Pub/Sub outage costs latency, never events. If the
//! stream no longer holds that position, the room's clients are told `resync_required`.
//!
//! Everything here goes by stream entry (a change set or a single event): one message, one id, one dispatch.
//!
//! On a Redis Cluster a dropped node connection, a subscription the server ended (its slot moved) or a failed ping
//! also starts over, on a fresh cluster connection, but room by room: a room whose shard does not answer yet (its
//! primary is failing over) is *stale* — its live messages are set aside — and is subscribed again and filled from
//! its stream every [`STALE_RETRY`] until that works, while the rooms of healthy shards are served at once. A
//! watchdog compares each room with its stream every [`WATCHDOG_EVERY`]: a room whose stream stays ahead of what
//! it dispatched (a subscription lost without a sign) is made stale, so it is recovered from the stream too.
//!
//! One task owns every room (no locks on the dispatch path); joins and leaves come to it as commands, in order
//! with the messages, so a client's registration has a definite place in the event sequence.

use std::{collections::HashMap, sync::Arc, time::Duration};

use codegraph_shared::{
    event::StreamId,
    functions::PublishMode,
    names::RedisNames,
    project::ProjectName,
    pubsub::{Incoming, Subscription},
    redis_handle::RedisHandle,
    stream::{self, Retention},
};
use tokio::sync::{mpsc, oneshot};

use crate::{client::Client, filter::PartialFrames, gateway_event::GatewayEvent, status::Stats};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often stale rooms (on a cluster) are subscribed and filled again: a failover lasts about the cluster's node
/// timeout plus a second, and each try is one cheap read.
const STALE_RETRY: Duration = Duration::from_millis(200);
/// Stale this long, the whole cluster connection is made again.
const STALE_GIVE_UP: Duration = Duration::from_secs(30);
/// Longest try at one room on a cluster: a room whose shard is failing over must not hold up the others.
const ROOM_TRY: Duration = Duration::from_millis(500);
/// How often (on a cluster) each room is compared with its stream.
const WATCHDOG_EVERY: Duration = Duration::from_secs(1);

/// The handle sessions use to join and leave project rooms.
#[derive(Clone)]
pub struct Hub {
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Join { client: Arc<Client>, project: ProjectName },
    Leave { client_id: u64, project: ProjectName },
    WhenActive { project: ProjectName, reply: oneshot::Sender<()> },
}

impl Hub {
    /// Starts the fan-out task. It runs for the life of the process, reconnecting to Redis by itself.
    pub fn start(redis: RedisHandle, replay_page: usize, ping_every: Duration, stats: Arc<Stats>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let fanout = Fanout { redis, rooms: HashMap::new(), page: replay_page.max(1), ping_every, stats };
        tokio::spawn(fanout.run(rx));
        Self { commands: tx }
    }

    /// Adds the client to the project's room; live events of the project reach [`Client::deliver`] from now on.
    pub fn join(&self, client: &Arc<Client>, project: &ProjectName) {
        let _ = self.commands.send(Command::Join { client: client.clone(), project: project.clone() });
    }

    pub fn leave(&self, client_id: u64, project: &ProjectName) {
        let _ = self.commands.send(Command::Leave { client_id, project: project.clone() });
    }

    /// Resolves once the project's room is subscribed and its baseline known: from then on every event of the
    /// project newer than the baseline is dispatched to the room, whatever happens to the Redis connection.
    /// Errs when the room is gone (its clients left).
    pub fn when_active(&self, project: &ProjectName) -> oneshot::Receiver<()> {
        let (reply, rx) = oneshot::channel();
        let _ = self.commands.send(Command::WhenActive { project: project.clone(), reply });
        rx
    }
}

struct Room {
    names: RedisNames,
    clients: Vec<Arc<Client>>,
    /// Newest id dispatched to the room.
    last: Option<StreamId>,
    /// The stream's last generated id when the room was created, read before subscribing.
    baseline: Option<StreamId>,
    /// Subscribed and recovered at least once.
    active: bool,
    /// A message may have been missed (cluster: its node's connection dropped, or its slot moved): live messages
    /// are set aside until the room is subscribed again and filled from its stream.
    stale: bool,
    /// The stream's last id when the watchdog last found the stream ahead of what the room dispatched.
    ahead_seen: Option<StreamId>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Room {
    fn new(project: &ProjectName) -> Self {
        Self {
            names: RedisNames::new(project),
            clients: Vec::new(),
            last: None,
            baseline: None,
            active: false,
            stale: false,
            ahead_seen: None,
            waiters: Vec::new(),
        }
    }

    fn dispatch(&mut self, ev: &GatewayEvent) {
        if self.last.is_some_and(|l| ev.id() <= l) {
            return;
        }
        self.last = Some(ev.id());
        let project = self.names.project();
        // A traced mutation gets a span for its fan-out, a child of the mutation's span; others cost nothing.
        let span = ev.traceparent().map(|tp| {
            let span =
                tracing::info_span!("deliver", event_id = %ev.id(), project = %project, clients = self.clients.len());
            codegraph_shared::telemetry::set_parent(&span, tp);
            span
        });
        let _entered = span.as_ref().map(|s| s.enter());
        // Clients whose filters keep the same changes of a set get one cut of it.
        let mut cut = PartialFrames::default();
        for client in &self.clients {
            client.deliver_shared(project, ev, &mut cut);
        }
    }

    fn activate(&mut self) {
        self.active = true;
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    /// Where recovery reads from: the newest id dispatched, or the baseline.
    fn resume_point(&self) -> StreamId {
        self.last.max(self.baseline).unwrap_or_default()
    }
}

struct Fanout {
    redis: RedisHandle,
    /// By channel name.
    rooms: HashMap<String, Room>,
    page: usize,
    ping_every: Duration,
    stats: Arc<Stats>,
}

/// Why the Pub/Sub connection is considered lost.
type Lost = String;

impl Fanout {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let redis = self.redis.clone();
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, async move {
                Subscription::connect(&redis, redis.publish_mode() == PublishMode::Sharded).await
            });
            tokio::pin!(connect);
            let connected = loop {
                tokio::select! {
                    cmd = commands.recv() => match cmd {
                        Some(cmd) => self.apply_offline(cmd),
                        None => return,
                    },
                    r = &mut connect => break r,
                }
            };
            let lost = match connected {
                Ok(Ok(mut sub)) => match self.resubscribe(&mut sub).await {
                    Ok(()) => {
                        tracing::info!(projects = self.rooms.len(), "Pub/Sub connected");
                        self.stats.redis_up(true, None);
                        backoff = MIN_BACKOFF;
                        match self.serve(&mut sub, &mut commands).await {
                            Some(lost) => lost,
                            None => return,
                        }
                    }
                    Err(lost) => lost,
                },
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect timed out".to_owned(),
            };
            tracing::warn!(reason = %lost, retry_in_ms = backoff.as_millis() as u64, "Pub/Sub connection lost");
            self.stats.redis_up(false, Some(lost));
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    cmd = commands.recv() => match cmd {
                        Some(cmd) => self.apply_offline(cmd),
                        None => return,
                    },
                    _ = &mut wait => break,
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Serves a live connection until it is lost (`Some`) or every hub handle is gone (`None`).
    async fn serve(&mut self, sub: &mut Subscription, commands: &mut mpsc::UnboundedReceiver<Command>) -> Option<Lost> {
        let mut ping = tokio::time::interval(self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut retry = tokio::time::interval(STALE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watchdog = tokio::time::interval(WATCHDOG_EVERY);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Since when some room has been stale.
        let mut stale_since: Option<tokio::time::Instant> = None;
        let cluster = sub.is_cluster();
        loop {
            let any_stale = self.rooms.values().any(|r| r.stale);
            if !any_stale {
                stale_since = None;
            }
            tokio::select! {
                msg = sub.next() => match msg {
                    Incoming::Message { channel, payload } => self.on_message(&channel, payload),
                    Incoming::Unsubscribed(channel) if self.rooms.contains_key(&channel) => {
                        // The server dropped the subscription (its slot moved to another node): start over, which
                        // subscribes at the slot's new owner and fills the gap from the stream.
                        return Some(format!("the server ended the subscription of {channel} (slot moved)"));
                    }
                    Incoming::Unsubscribed(_) | Incoming::Other => {}
                    Incoming::Lost(why) => return Some(why),
                },
                _ = watchdog.tick(), if cluster => {
                    if self.watch_rooms().await {
                        stale_since.get_or_insert_with(tokio::time::Instant::now);
                    }
                }
                _ = retry.tick(), if any_stale => {
                    self.recover_stale(sub).await;
                    if stale_since.is_some_and(|t| t.elapsed() > STALE_GIVE_UP) {
                        return Some(format!("rooms stale for more than {} s", STALE_GIVE_UP.as_secs()));
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(cmd) => {
                        if let Err(lost) = self.apply_online(cmd, sub).await {
                            if !cluster {
                                return Some(lost);
                            }
                            stale_since.get_or_insert_with(tokio::time::Instant::now);
                        }
                    }
                    None => return None,
                },
                _ = ping.tick() => {
                    let failed = match tokio::time::timeout(self.ping_every, sub.ping()).await {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(format!("ping failed: {e}")),
                        Err(_) => Some("ping timed out".into()),
                    };
                    if let Some(why) = failed {
                        return Some(why);
                    }
                }
            }
        }
    }

    /// The watchdog: a room whose stream was ahead of what it dispatched at the last look and still has not
    /// dispatched up to there lost its subscription without a sign; it is made stale (recovered from the stream).
    /// True when it made a room stale.
    async fn watch_rooms(&mut self) -> bool {
        let mut conn = self.redis.conn();
        let mut found = false;
        for room in self.rooms.values_mut().filter(|r| r.active && !r.stale) {
            let Ok(last) = stream::last_generated_id(&mut conn, &room.names.cdc_stream()).await else { continue };
            let dispatched = room.resume_point();
            if last <= dispatched {
                room.ahead_seen = None;
                continue;
            }
            match room.ahead_seen {
                Some(seen) if dispatched < seen => {
                    tracing::warn!(project = %room.names.project(), %dispatched, stream = %last, "the room's stream stays ahead of it: recovering it from the stream");
                    room.stale = true;
                    room.ahead_seen = None;
                    found = true;
                }
                _ => room.ahead_seen = Some(last),
            }
        }
        found
    }

    /// Marks one room (or every room) stale: messages may have been missed.
    fn mark_stale(&mut self, channel: Option<&str>) {
        for (name, room) in self.rooms.iter_mut() {
            if channel.is_none_or(|c| c == name) {
                room.stale = true;
            }
        }
    }

    /// Subscribes each stale room again and fills it from its stream; a room whose shard does not answer yet stays
    /// stale for the next try.
    async fn recover_stale(&mut self, sub: &mut Subscription) {
        let stale: Vec<String> = self.rooms.iter().filter(|(_, r)| r.stale).map(|(c, _)| c.clone()).collect();
        for channel in stale {
            match self.try_room(&channel, sub).await {
                Ok(()) => {
                    if let Some(room) = self.rooms.get_mut(&channel) {
                        room.stale = false;
                        tracing::info!(project = %room.names.project(), "room recovered");
                    }
                }
                Err(why) => tracing::debug!(%channel, reason = %why, "room not recovered yet"),
            }
        }
    }

    fn on_message(&mut self, channel: &str, payload: Vec<u8>) {
        let Some(room) = self.rooms.get_mut(channel) else { return };
        if room.stale {
            // Read from the stream when the room is recovered: dispatching it now would skip a gap before it.
            return;
        }
        match GatewayEvent::from_published(payload) {
            Ok(ev) => {
                self.stats.entry_received(false);
                room.dispatch(&ev);
            }
            Err(e) => tracing::warn!(channel, error = %e, "dropped a malformed publication"),
        }
    }

    /// Adds the client to its project's room; returns the room's channel and whether the room is not active yet.
    fn enter(&mut self, client: Arc<Client>, project: &ProjectName) -> (String, bool) {
        let channel = RedisNames::new(project).events_channel();
        let room = self.rooms.entry(channel.clone()).or_insert_with(|| Room::new(project));
        room.clients.push(client);
        let inactive = !room.active;
        (channel, inactive)
    }

    /// Removes the client from its project's room; returns the channel when the room is now empty (and gone).
    fn exit(&mut self, client_id: u64, project: &ProjectName) -> Option<String> {
        let channel = RedisNames::new(project).events_channel();
        let room = self.rooms.get_mut(&channel)?;
        room.clients.retain(|c| c.id() != client_id);
        if !room.clients.is_empty() {
            return None;
        }
        self.rooms.remove(&channel);
        Some(channel)
    }

    fn apply_offline(&mut self, cmd: Command) {
        match cmd {
            Command::Join { client, project } => {
                self.enter(client, &project);
            }
            Command::Leave { client_id, project } => {
                self.exit(client_id, &project);
            }
            Command::WhenActive { project, reply } => self.when_active(&project, reply),
        }
        self.stats.set_subscribed_projects(self.rooms.len());
    }

    async fn apply_online(&mut self, cmd: Command, sub: &mut Subscription) -> Result<(), Lost> {
        match cmd {
            Command::Join { client, project } => {
                if let (channel, true) = self.enter(client, &project) {
                    if let Err(lost) = self.open_room(&channel, sub).await {
                        // On a cluster only this room's shard is in trouble: retried with the stale rooms.
                        self.mark_stale(Some(&channel));
                        return Err(lost);
                    }
                }
            }
            Command::Leave { client_id, project } => {
                if let Some(channel) = self.exit(client_id, &project) {
                    sub.unsubscribe(&channel).await.map_err(|e| format!("UNSUBSCRIBE failed: {e}"))?;
                }
            }
            Command::WhenActive { project, reply } => self.when_active(&project, reply),
        }
        self.stats.set_subscribed_projects(self.rooms.len());
        Ok(())
    }

    fn when_active(&mut self, project: &ProjectName, reply: oneshot::Sender<()>) {
        match self.rooms.get_mut(&RedisNames::new(project).events_channel()) {
            Some(room) if room.active => {
                let _ = reply.send(());
            }
            Some(room) => room.waiters.push(reply),
            None => {}
        }
    }

    /// Baseline, SUBSCRIBE, recovery, activation of one room on the current connection.
    async fn open_room(&mut self, channel: &str, sub: &mut Subscription) -> Result<(), Lost> {
        self.ensure_baseline(channel).await?;
        sub.subscribe(&[channel.to_owned()]).await.map_err(|e| format!("SUBSCRIBE failed: {e}"))?;
        self.recover(channel).await?;
        if let Some(room) = self.rooms.get_mut(channel) {
            room.stale = false;
            room.activate();
        }
        Ok(())
    }

    /// [`Self::open_room`] within [`ROOM_TRY`] (on a cluster): cut short, the room stays stale and is tried again; what
    /// it dispatched before stays dispatched (the next try reads after it).
    async fn try_room(&mut self, channel: &str, sub: &mut Subscription) -> Result<(), Lost> {
        match tokio::time::timeout(ROOM_TRY, self.open_room(channel, sub)).await {
            Ok(done) => done,
            Err(_) => Err(format!("no answer within {} ms", ROOM_TRY.as_millis())),
        }
    }

    /// After a (re)connection: subscribes every room and fills each one's gap from its stream.
    async fn resubscribe(&mut self, sub: &mut Subscription) -> Result<(), Lost> {
        let channels: Vec<String> = self.rooms.keys().cloned().collect();
        if channels.is_empty() {
            return Ok(());
        }
        if sub.is_cluster() {
            // Room by room: a shard that does not answer yet leaves its rooms stale, the others are served.
            for channel in &channels {
                if let Err(why) = self.try_room(channel, sub).await {
                    tracing::warn!(%channel, reason = %why, "room not subscribed yet; retrying");
                    self.mark_stale(Some(channel));
                }
            }
            return Ok(());
        }
        for channel in &channels {
            self.ensure_baseline(channel).await?;
        }
        sub.subscribe(&channels).await.map_err(|e| format!("SUBSCRIBE failed: {e}"))?;
        for channel in &channels {
            self.recover(channel).await?;
            if let Some(room) = self.rooms.get_mut(channel) {
                room.activate();
            }
        }
        Ok(())
    }

    async fn ensure_baseline(&mut self, channel: &str) -> Result<(), Lost> {
        let Some(room) = self.rooms.get_mut(channel) else { return Ok(()) };
        if room.baseline.is_none() {
            let mut conn = self.redis.conn();
            let last = stream::last_generated_id(&mut conn, &room.names.cdc_stream())
                .await
                .map_err(|e| format!("reading the stream of {} failed: {e}", room.names.project()))?;
            room.baseline = Some(last);
        }
        Ok(())
    }

    /// Dispatches every event the stream holds after the room's resume point.
    async fn recover(&mut self, channel: &str) -> Result<(), Lost> {
        let Some(room) = self.rooms.get_mut(channel) else { return Ok(()) };
        let mut conn = self.redis.conn();
        let mut after = room.resume_point();
        loop {
            let page = stream::read_after(&mut conn, &room.names.cdc_stream(), after, self.page)
                .await
                .map_err(|e| format!("reading the stream of {} failed: {e}", room.names.project()))?;
            let retention = page.info.retention_after(after);
            if retention != Retention::Complete {
                tracing::warn!(project = %room.names.project(), %after, reason = retention.reason(), "gap too old to recover");
                for client in &room.clients {
                    client.resync(room.names.project(), after, retention.oldest(), retention.reason());
                }
                room.last = Some(page.info.last_generated);
                return Ok(());
            }
            let n = page.entries.len();
            for entry in page.entries {
                let id = entry.id;
                after = id;
                match GatewayEvent::from_entry(&entry) {
                    Ok(ev) => {
                        self.stats.entry_received(true);
                        room.dispatch(&ev);
                    }
                    Err(e) => {
                        tracing::warn!(project = %room.names.project(), %id, error = %e, "skipped a malformed stream entry")
                    }
                }
            }
            if n < self.page {
                return Ok(());
            }
        }
    }
}
