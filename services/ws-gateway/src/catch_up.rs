//! Resume: replays a project's stream to one client from the id it names, then hands over to live delivery with
//! no gap and no duplicate (the seam is described in `client.rs`).
//!
//! The client has already joined the project's room (so live events are collected from then on); the replay waits
//! until the room is active, then reads the stream page by page, each page checked against the stream's
//! retention. A position the stream no longer holds ends in `resync_required` and a 4009 close. The replay waits
//! for the client's outbox to drain rather than overflow it, so a long backlog is paced, not cut. Redis errors
//! are retried with backoff for as long as the client stays.

use std::{sync::Arc, time::Duration};

use codegraph_shared::{
    event::StreamId,
    names::RedisNames,
    project::ProjectName,
    redis_handle::RedisHandle,
    stream::{self, Retention},
};

use crate::{
    client::{CatchUpEnd, Client},
    fanout::Hub,
    gateway_event::GatewayEvent,
};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What a catch-up needs besides the client.
#[derive(Clone)]
pub struct Replayer {
    pub redis: RedisHandle,
    pub hub: Hub,
    pub page: usize,
}

impl Replayer {
    /// Spawns the catch-up `generation` of `project` for `client`, from `since` (exclusive).
    pub fn spawn(&self, client: Arc<Client>, project: ProjectName, since: StreamId, generation: u64) {
        let this = self.clone();
        tokio::spawn(async move { this.run(client, project, since, generation).await });
    }

    async fn run(self, client: Arc<Client>, project: ProjectName, since: StreamId, generation: u64) {
        if self.hub.when_active(&project).await.is_err() {
            return;
        }
        let names = RedisNames::new(&project);
        let mut cursor = since;
        let mut backoff = MIN_BACKOFF;
        let mut conn = self.redis.conn();
        loop {
            if !client.wants_replay(&project, generation) {
                return;
            }
            let page = match stream::read_after(&mut conn, &names.cdc_stream(), cursor, self.page).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(client = client.id(), %project, error = %e, "replay read failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = MIN_BACKOFF;
            let retention = page.info.retention_after(cursor);
            if retention != Retention::Complete {
                client.resync(&project, cursor, retention.oldest(), retention.reason());
                return;
            }
            let n = page.entries.len();
            for entry in page.entries {
                let id = entry.id;
                cursor = id;
                match GatewayEvent::from_entry(&entry) {
                    Ok(ev) => {
                        if client.replay(&project, generation, &ev).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(%project, %id, error = %e, "skipped a malformed stream entry"),
                }
            }
            if n < self.page {
                match client.finish_catch_up(&project, generation, cursor) {
                    CatchUpEnd::Live | CatchUpEnd::Stopped => return,
                    CatchUpEnd::ReadMore => {}
                }
            }
        }
    }
}
