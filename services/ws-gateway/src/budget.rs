//! The gateway's memory budget: the bytes waiting for all clients together, besides each client's own outbox
//! limit.
//!
//! Each outbox bounds one client, but ten thousand clients each just under their limit are gigabytes. Every byte an
//! outbox queues, and every byte its writer has taken and not yet written, is charged here; when a push takes the
//! total past `total_outbox_max_bytes`, the clients holding the most bytes are closed with 4008 (they reconnect and
//! resume from their last id, like any client cut for being slow) until the total is back under a low-water mark.
//! So a burst of large entries to many slow readers costs some of them a reconnect instead of costing the process
//! its memory. The charge counts a frame once per client that holds it, even when clients share its bytes (an
//! unfiltered frame is one reference-counted buffer), so it is an upper bound of what the queues really use.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex, Weak,
};

use crate::{protocol::CloseReason, registry::Registry, status::Stats};

pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    /// Who may be cut; weak, since the clients hold the budget.
    clients: Weak<Registry>,
    /// One relief pass at a time: a second caller finds the total already brought down.
    relief: Mutex<()>,
    stats: Arc<Stats>,
}

impl MemoryBudget {
    pub fn new(limit: usize, clients: Weak<Registry>, stats: Arc<Stats>) -> Self {
        Self { limit, used: AtomicUsize::new(0), clients, relief: Mutex::new(()), stats }
    }

    /// No total limit and nobody to cut (tests of a single client).
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self::new(usize::MAX, Weak::new(), Arc::new(Stats::default())))
    }

    pub fn charge(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes held for all clients now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn exceeded(&self) -> bool {
        self.used() > self.limit
    }

    /// Replays from the stream can wait, so they use only half the budget (as they use half of an outbox), leaving
    /// the rest to live traffic: a reconnect storm is paced instead of cut.
    pub fn has_room_for_replay(&self, bytes: usize) -> bool {
        self.used().saturating_add(bytes) <= self.limit / 2
    }

    /// Closes the clients holding the most bytes, largest first, until the total is under the low-water mark
    /// (15/16 of the limit: one pass makes room for many pushes, so a saturated gateway does not scan its clients
    /// at every frame). Call it without holding any client's lock.
    pub fn relieve(&self) {
        let _one = self.relief.lock().unwrap_or_else(|e| e.into_inner());
        if !self.exceeded() {
            return;
        }
        let Some(registry) = self.clients.upgrade() else { return };
        let low_water = self.limit - self.limit / 16;
        let mut holders: Vec<_> = registry.clients().into_iter().map(|c| (c.held_bytes(), c)).collect();
        holders.sort_unstable_by_key(|(held, _)| std::cmp::Reverse(*held));
        for (held, client) in holders {
            if self.used() <= low_water || held == 0 {
                break;
            }
            let why = format!(
                "gateway memory budget ({} bytes for all clients) full; you held the most ({held}): reconnect and resume",
                self.limit
            );
            if client.close(CloseReason::TooSlow, Some(why)) {
                self.stats.over_budget_cut();
                tracing::info!(
                    client = client.id(),
                    held,
                    used = self.used(),
                    limit = self.limit,
                    "budget: client cut"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client::Endpoint, filter::EventFilter};

    fn setup(limit: usize, clients: usize) -> (Arc<Registry>, Arc<MemoryBudget>, Vec<Arc<crate::client::Client>>) {
        let registry = Arc::new(Registry::default());
        let stats = Arc::new(Stats::default());
        let budget = Arc::new(MemoryBudget::new(limit, Arc::downgrade(&registry), stats.clone()));
        let all: Vec<_> = (0..clients)
            .map(|_| {
                let c = Arc::new(crate::client::Client::new(
                    registry.next_id(),
                    Endpoint::Events,
                    1 << 20,
                    EventFilter::projects_only(Vec::new()),
                    stats.clone(),
                    budget.clone(),
                ));
                registry.insert(c.clone());
                c
            })
            .collect();
        (registry, budget, all)
    }

    #[test]
    fn the_biggest_holder_is_cut_when_the_total_is_passed() {
        let (_registry, budget, c) = setup(1000, 3);
        c[0].send_control("x".repeat(300));
        c[1].send_control("x".repeat(500));
        c[2].send_control("x".repeat(100));
        assert_eq!(budget.used(), 900);
        assert!(c.iter().all(|c| c.closing().is_none()), "within the budget nobody is cut");
        // 200 more bytes for the smallest: 1,100 > 1,000, and the one holding 500 goes.
        c[2].send_control("x".repeat(200));
        assert_eq!(c[1].closing(), Some(CloseReason::TooSlow));
        assert_eq!((c[0].closing(), c[2].closing()), (None, None));
        assert_eq!(budget.used(), 600);
        assert_eq!(c[1].held_bytes(), 0, "a cut client's queue is released");
    }

    #[test]
    fn frames_being_written_count_until_written() {
        let (_registry, budget, c) = setup(1000, 1);
        c[0].send_control("x".repeat(400));
        let mut batch = std::collections::VecDeque::new();
        c[0].take(&mut batch);
        assert_eq!((budget.used(), c[0].held_bytes()), (400, 400), "taken but not yet written");
        c[0].batch_written();
        assert_eq!(budget.used(), 0);
        c[0].send_control("x".repeat(100));
        drop(c);
        drop(_registry);
        assert_eq!(budget.used(), 0, "a client that goes away releases what it held");
    }

    #[test]
    fn replays_use_half() {
        let (_registry, budget, c) = setup(1000, 1);
        assert!(budget.has_room_for_replay(500));
        c[0].send_control("x".repeat(400));
        assert!(!budget.has_room_for_replay(101));
    }
}
