//! One connected client as the rest of the gateway sees it: its outbox, its filter, and per followed project
//! where its feed stands (live, or catching up from the stream).
//!
//! The fan-out calls [`Client::deliver`] for every live stream entry (change set or single event) of a project the
//! client follows; a catch-up task calls [`Client::replay`] for entries read from the stream and
//! [`Client::finish_catch_up`] at the end of the stream; the connection's writer drains the outbox with
//! [`Client::take`]. All of them meet under one mutex per client, never held across an await, so the order in the
//! outbox is the order of the stream. Each entry becomes at most one frame, cut by the client's filter
//! ([`EventFilter::frame`]) when it is queued.
//!
//! The seam between replay and live: while a project is catching up, its live entries wait in `pending` (bounded
//! like the outbox). At the end of the stream, under the lock, the pending entries newer than the last replayed
//! id go out and the feed turns live. Every entry newer than the resume point is thus either read from the stream
//! or pending (the client joined the project's room before the first read), and de-duplication by entry id
//! removes the overlap. When `pending` overflows it is dropped and the replay simply reads further: the stream
//! has those entries too.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use codegraph_shared::{event::StreamId, project::ProjectName, stream::now_ms};
use tokio::sync::Notify;

use crate::{
    budget::MemoryBudget,
    filter::{EventFilter, PartialFrames},
    gateway_event::GatewayEvent,
    outbox::{Frame, Outbox},
    protocol::{self, CloseReason},
    status::Stats,
};

/// Which endpoint a client came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Events,
    Filtered,
    Status,
}

pub struct Client {
    id: u64,
    endpoint: Endpoint,
    state: Mutex<State>,
    /// Frames were queued or a close was requested: the writer should look.
    wake: Notify,
    /// A close was requested: a writer blocked on a slow socket should give up.
    cut: Notify,
    /// The outbox has drained: a waiting replay may continue.
    room: Notify,
    /// How many messages (of any kind, pongs included) the client has sent.
    heard: AtomicU64,
    stats: Arc<Stats>,
    budget: Arc<MemoryBudget>,
}

struct State {
    outbox: Outbox,
    filter: EventFilter,
    feeds: Vec<(ProjectName, Feed)>,
    closing: Option<(CloseReason, String)>,
    next_generation: u64,
}

enum Feed {
    /// Live events go straight to the outbox; `last` is the newest id handed over (for de-duplication).
    Live { last: Option<StreamId> },
    /// A replay from the stream is running; live events wait in `pending`.
    CatchingUp { generation: u64, pending: VecDeque<GatewayEvent>, pending_bytes: usize, overflowed: bool },
}

/// A replay should stop: the client is closing, or a newer resume replaced this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStopped;

/// What the end of the stream means for a catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUpEnd {
    /// The feed is live now.
    Live,
    /// Live events were dropped while catching up: read the stream further.
    ReadMore,
    /// Another resume replaced this one, or the client is closing.
    Stopped,
}

/// A client's queue as `/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueReport {
    pub id: u64,
    pub endpoint: Endpoint,
    pub projects: Vec<String>,
    pub queued_frames: usize,
    pub queued_bytes: usize,
    /// Age of the oldest queued event, in ms.
    pub lag_ms: u64,
}

impl Client {
    pub fn new(
        id: u64,
        endpoint: Endpoint,
        outbox_limit: usize,
        filter: EventFilter,
        stats: Arc<Stats>,
        budget: Arc<MemoryBudget>,
    ) -> Self {
        Self {
            id,
            endpoint,
            state: Mutex::new(State {
                outbox: Outbox::new(outbox_limit, budget.clone()),
                filter,
                feeds: Vec::new(),
                closing: None,
                next_generation: 1,
            }),
            wake: Notify::new(),
            cut: Notify::new(),
            room: Notify::new(),
            heard: AtomicU64::new(0),
            stats,
            budget,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live event of `project`, from the fan-out. Never waits.
    pub fn deliver(&self, project: &ProjectName, ev: &GatewayEvent) {
        self.deliver_shared(project, ev, &mut PartialFrames::default())
    }

    /// [`Client::deliver`] for one of the clients of a room: partial frames of `ev` are shared through `cut`.
    pub fn deliver_shared(&self, project: &ProjectName, ev: &GatewayEvent, cut: &mut PartialFrames) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.closing.is_some() {
            return;
        }
        let Some((_, feed)) = st.feeds.iter_mut().find(|(p, _)| p == project) else { return };
        match feed {
            Feed::Live { last } => {
                if last.is_some_and(|l| ev.id() <= l) {
                    return;
                }
                *last = Some(ev.id());
                let Some(frame) = st.filter.frame_shared(ev, cut) else { return };
                if st.outbox.push(frame).is_err() {
                    drop(guard);
                    self.stats.slow_client_cut();
                    self.close(CloseReason::TooSlow, None);
                    return;
                }
            }
            Feed::CatchingUp { pending, pending_bytes, overflowed, .. } => {
                if *overflowed {
                    return;
                }
                if *pending_bytes + ev.len() > st.outbox.limit() {
                    *overflowed = true;
                    *pending = VecDeque::new();
                    *pending_bytes = 0;
                } else {
                    *pending_bytes += ev.len();
                    pending.push_back(ev.clone());
                }
                return;
            }
        }
        drop(guard);
        self.queued();
    }

    /// Frames were queued: wakes the writer, and brings the gateway back within its memory budget if this push
    /// took it over (which may cut this client or others).
    fn queued(&self) {
        self.wake.notify_one();
        if self.budget.exceeded() {
            self.budget.relieve();
        }
    }

    /// Starts following `project` (or restarts its feed): live from now, or catching up from `since`.
    /// Returns the generation of the catch-up to run, if any.
    pub fn start_feed(&self, project: &ProjectName, since: Option<StreamId>) -> Option<u64> {
        let mut st = self.lock();
        let (feed, generation) = match since {
            None => (Feed::Live { last: None }, None),
            Some(_) => {
                let generation = st.next_generation;
                st.next_generation += 1;
                let feed =
                    Feed::CatchingUp { generation, pending: VecDeque::new(), pending_bytes: 0, overflowed: false };
                (feed, Some(generation))
            }
        };
        match st.feeds.iter_mut().find(|(p, _)| p == project) {
            Some((_, f)) => *f = feed,
            None => st.feeds.push((project.clone(), feed)),
        }
        generation
    }

    pub fn stop_feed(&self, project: &ProjectName) {
        self.lock().feeds.retain(|(p, _)| p != project);
    }

    pub fn follows(&self, project: &ProjectName) -> bool {
        self.lock().feeds.iter().any(|(p, _)| p == project)
    }

    pub fn projects(&self) -> Vec<ProjectName> {
        self.lock().feeds.iter().map(|(p, _)| p.clone()).collect()
    }

    pub fn set_filter(&self, filter: EventFilter) {
        self.lock().filter = filter;
    }

    /// True while the catch-up `generation` of `project` is the current one and the client is open.
    pub fn wants_replay(&self, project: &ProjectName, generation: u64) -> bool {
        let st = self.lock();
        st.closing.is_none() && current_generation(&st, project) == Some(generation)
    }

    /// An event read from the stream during a catch-up. Waits while the outbox is over half full.
    pub async fn replay(&self, project: &ProjectName, generation: u64, ev: &GatewayEvent) -> Result<(), ReplayStopped> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closing.is_some() || current_generation(&st, project) != Some(generation) {
                    return Err(ReplayStopped);
                }
                // Cut anew after each wait: the client may have changed its filter meanwhile.
                let Some(frame) = st.filter.frame(ev) else { return Ok(()) };
                if st.outbox.has_room_for_replay(frame.text.len()) {
                    // Cannot fail: there is room.
                    let _ = st.outbox.push(frame);
                    drop(st);
                    self.queued();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// The catch-up `generation` of `project` read the stream up to its end at `cursor` (the last id replayed,
    /// or the resume point).
    pub fn finish_catch_up(&self, project: &ProjectName, generation: u64, cursor: StreamId) -> CatchUpEnd {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.closing.is_some() {
            return CatchUpEnd::Stopped;
        }
        let Some((_, feed)) = st.feeds.iter_mut().find(|(p, _)| p == project) else { return CatchUpEnd::Stopped };
        let Feed::CatchingUp { generation: g, pending, overflowed, pending_bytes } = feed else {
            return CatchUpEnd::Stopped;
        };
        if *g != generation {
            return CatchUpEnd::Stopped;
        }
        if *overflowed {
            *overflowed = false;
            *pending_bytes = 0;
            return CatchUpEnd::ReadMore;
        }
        let pending = std::mem::take(pending);
        let mut last = cursor;
        let mut too_slow = false;
        for ev in pending {
            if ev.id() <= last {
                continue;
            }
            last = ev.id();
            if too_slow {
                continue;
            }
            if let Some(frame) = st.filter.frame(&ev) {
                too_slow = st.outbox.push(frame).is_err();
            }
        }
        *feed = Feed::Live { last: Some(last) };
        drop(guard);
        if too_slow {
            self.stats.slow_client_cut();
            self.close(CloseReason::TooSlow, None);
            return CatchUpEnd::Stopped;
        }
        self.queued();
        CatchUpEnd::Live
    }

    /// A control message (pong, error, subscribed, status). A client too slow to take it is cut.
    pub fn send_control(&self, text: String) {
        let pushed = {
            let mut st = self.lock();
            if st.closing.is_some() {
                return;
            }
            st.outbox.push(Frame::control(text)).is_ok()
        };
        if pushed {
            self.queued();
        } else {
            self.stats.slow_client_cut();
            self.close(CloseReason::TooSlow, None);
        }
    }

    /// Tells the client its position in `project` is gone from the stream, then closes with 4009.
    pub fn resync(&self, project: &ProjectName, since: StreamId, oldest: Option<StreamId>, reason: &str) {
        self.send_control(protocol::resync_required(project.as_str(), since, oldest, reason));
        self.close(CloseReason::ResyncRequired, Some(format!("resync required for project {project}")));
    }

    /// Asks the writer to close the connection. The first reason wins: returns false when the client was already
    /// closing.
    pub fn close(&self, reason: CloseReason, text: Option<String>) -> bool {
        {
            let mut st = self.lock();
            if st.closing.is_some() {
                return false;
            }
            if !reason.flushes_outbox() {
                st.outbox.clear();
            }
            st.closing = Some((reason, text.unwrap_or_else(|| reason.default_text().to_owned())));
        }
        self.wake.notify_one();
        self.cut.notify_one();
        self.room.notify_waiters();
        true
    }

    pub fn closing(&self) -> Option<CloseReason> {
        self.lock().closing.as_ref().map(|(r, _)| *r)
    }

    /// The text of the close frame to send, once a close was requested.
    pub fn close_text(&self) -> Option<String> {
        self.lock().closing.as_ref().map(|(_, text)| text.clone())
    }

    /// For the writer: moves the queued frames to `out`; returns the close request, if any.
    pub fn take(&self, out: &mut VecDeque<Frame>) -> Option<(CloseReason, String)> {
        let closing = {
            let mut st = self.lock();
            st.outbox.take_into(out);
            st.closing.clone()
        };
        self.room.notify_waiters();
        closing
    }

    /// For the writer: everything it took has been written.
    pub fn batch_written(&self) {
        self.lock().outbox.written();
    }

    /// Bytes charged to the gateway's memory budget for this client (queued and being written).
    pub fn held_bytes(&self) -> usize {
        self.lock().outbox.held()
    }

    /// Resolves when frames may be waiting (or a close was requested).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Resolves when a close was requested (for a writer stuck on a full socket).
    pub async fn cut(&self) {
        self.cut.notified().await
    }

    /// The client sent something (a pong, a message): it is alive.
    pub fn heard(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// Grows with every message from the client; unchanged since a ping means no pong.
    pub fn heard_count(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> QueueReport {
        let st = self.lock();
        QueueReport {
            id: self.id,
            endpoint: self.endpoint,
            projects: st.feeds.iter().map(|(p, _)| p.to_string()).collect(),
            queued_frames: st.outbox.len(),
            queued_bytes: st.outbox.bytes(),
            lag_ms: st.outbox.oldest_published_ms().map(|t| now_ms().saturating_sub(t)).unwrap_or(0),
        }
    }
}

fn current_generation(st: &State, project: &ProjectName) -> Option<u64> {
    st.feeds.iter().find(|(p, _)| p == project).and_then(|(_, f)| match f {
        Feed::CatchingUp { generation, .. } => Some(*generation),
        Feed::Live { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change set of two changes: node `n` and a relationship from `n` to `m`.
    fn ev(ms: u64) -> GatewayEvent {
        set(ms, "n")
    }

    fn set(ms: u64, node: &str) -> GatewayEvent {
        let body = format!(
            r#"{{"project":"p","type":"change_set","changes":[{{"type":"node_added","entity":{{"kind":"node","id":"{node}"}},"version":1,"data":{{}}}},{{"type":"relationship_added","entity":{{"kind":"relationship","id":"r"}},"version":1,"data":{{"source":"{node}","target":"m"}}}}],"ts":"t"}}"#
        );
        GatewayEvent::from_stream_entry(&format!("{ms}-0"), &body).unwrap()
    }

    /// An entry of a stream written before change sets: one graph change.
    fn single(ms: u64) -> GatewayEvent {
        let body =
            r#"{"project":"p","type":"node_added","entity":{"kind":"node","id":"n"},"version":1,"data":{},"ts":"t"}"#;
        GatewayEvent::from_stream_entry(&format!("{ms}-0"), body).unwrap()
    }

    fn filtered(filter: serde_json::Value) -> Client {
        let filter = EventFilter::from_json(filter).unwrap();
        Client::new(1, Endpoint::Filtered, 1 << 20, filter, Arc::new(Stats::default()), MemoryBudget::unlimited())
    }

    /// The queued frames as (entry ms, indexes of the changes they carry; `None`: the whole entry as published).
    fn frames(c: &Client) -> Vec<(u64, Option<Vec<u64>>)> {
        let mut out = VecDeque::new();
        c.take(&mut out);
        out.iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f.text.as_str()).unwrap();
                let indexes = v["changes"][0]
                    .get("index")
                    .map(|_| v["changes"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect());
                assert_eq!(f.changes as usize, v["changes"].as_array().map_or(1, Vec::len));
                (f.published_ms.unwrap(), indexes)
            })
            .collect()
    }

    fn client(limit: usize) -> Client {
        let p = ProjectName::parse("p").unwrap();
        let filter = EventFilter::projects_only(vec![p]);
        Client::new(1, Endpoint::Events, limit, filter, Arc::new(Stats::default()), MemoryBudget::unlimited())
    }

    fn ids(c: &Client) -> Vec<u64> {
        let mut out = VecDeque::new();
        c.take(&mut out);
        out.iter().map(|f| f.published_ms.unwrap()).collect()
    }

    #[test]
    fn live_delivery_drops_duplicates_and_unfollowed_projects() {
        let c = client(1 << 20);
        let p = ProjectName::parse("p").unwrap();
        c.deliver(&p, &ev(1));
        c.start_feed(&p, None);
        for ms in [1, 2, 2, 1, 3] {
            c.deliver(&p, &ev(ms));
        }
        assert_eq!(ids(&c), [1, 2, 3]);
    }

    #[tokio::test]
    async fn the_seam_has_no_gap_and_no_duplicate() {
        let c = client(1 << 20);
        let p = ProjectName::parse("p").unwrap();
        let generation = c.start_feed(&p, Some(StreamId::new(1, 0))).unwrap();
        // Live events arrive while the stream is read: 4 and 5 overlap the replay, 6 and 7 are new.
        for ms in [4, 5, 6, 7] {
            c.deliver(&p, &ev(ms));
        }
        for ms in [2, 3, 4, 5] {
            c.replay(&p, generation, &ev(ms)).await.unwrap();
        }
        assert_eq!(c.finish_catch_up(&p, generation, StreamId::new(5, 0)), CatchUpEnd::Live);
        c.deliver(&p, &ev(7));
        c.deliver(&p, &ev(8));
        assert_eq!(ids(&c), [2, 3, 4, 5, 6, 7, 8]);
    }

    #[tokio::test]
    async fn overflowing_pending_means_reading_further() {
        let c = client(ev(1).len() * 3);
        let p = ProjectName::parse("p").unwrap();
        let generation = c.start_feed(&p, Some(StreamId::ZERO)).unwrap();
        for ms in 1..=10 {
            c.deliver(&p, &ev(ms));
        }
        assert_eq!(c.finish_catch_up(&p, generation, StreamId::ZERO), CatchUpEnd::ReadMore);
        assert_eq!(c.closing(), None);
        // A newer resume makes the old catch-up stale.
        let newer = c.start_feed(&p, Some(StreamId::ZERO)).unwrap();
        assert_eq!(c.replay(&p, generation, &ev(1)).await, Err(ReplayStopped));
        assert_eq!(c.finish_catch_up(&p, generation, StreamId::ZERO), CatchUpEnd::Stopped);
        assert!(c.wants_replay(&p, newer));
    }

    #[test]
    fn old_and_new_entries_go_out_alike() {
        let c = client(1 << 20);
        let p = ProjectName::parse("p").unwrap();
        c.start_feed(&p, None);
        c.deliver(&p, &single(1));
        c.deliver(&p, &ev(2));
        c.deliver(&p, &single(2));
        assert_eq!(frames(&c), [(1, None), (2, None)]);
    }

    #[tokio::test]
    async fn a_filter_keeps_matching_changes_live_in_replay_and_at_the_seam() {
        let c = filtered(serde_json::json!({"projects": ["p"], "event_types": ["relationship_added"]}));
        let p = ProjectName::parse("p").unwrap();
        let generation = c.start_feed(&p, Some(StreamId::ZERO)).unwrap();
        c.deliver(&p, &ev(3));
        c.deliver(&p, &single(4));
        c.replay(&p, generation, &ev(1)).await.unwrap();
        c.replay(&p, generation, &single(2)).await.unwrap();
        assert_eq!(c.finish_catch_up(&p, generation, StreamId::new(2, 0)), CatchUpEnd::Live);
        c.deliver(&p, &ev(5));
        // Sets 1, 3, 5 give their relationship (index 1); the old-form node events give nothing.
        assert_eq!(frames(&c), [(1, Some(vec![1])), (3, Some(vec![1])), (5, Some(vec![1]))]);

        let c = filtered(serde_json::json!({"projects": ["p"], "node_ids": ["x"]}));
        c.start_feed(&p, None);
        c.deliver(&p, &set(1, "y"));
        c.deliver(&p, &set(2, "x"));
        assert_eq!(
            frames(&c),
            [(2, None)],
            "a set with no match sends nothing; one whose changes all match is sent whole"
        );
    }

    #[test]
    fn a_full_outbox_cuts_the_client_with_4008() {
        let c = client(ev(1).len() * 2);
        let p = ProjectName::parse("p").unwrap();
        c.start_feed(&p, None);
        for ms in 1..=3 {
            c.deliver(&p, &ev(ms));
        }
        assert_eq!(c.closing(), Some(CloseReason::TooSlow));
        assert!(ids(&c).is_empty(), "a cut client's queue is dropped");
    }
}
