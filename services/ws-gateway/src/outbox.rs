//! A client's outbox: the frames waiting to be written to its socket, bounded in bytes.
//!
//! The fan-out pushes live entries here and never waits: a push that would take the outbox past its limit fails,
//! and the caller closes the client with 4008 (it resumes from its last id on reconnect). So one slow client can
//! neither slow the others nor grow memory without bound. Replays from the stream, which can wait, only fill the
//! outbox to half its limit ([`Outbox::has_room_for_replay`]), leaving the other half to live traffic.
//!
//! Every byte queued here, and every byte the writer has taken and not yet written, is also charged to the
//! gateway's [`MemoryBudget`] (all clients together) until it is written or dropped.

use std::{collections::VecDeque, sync::Arc};

use axum::extract::ws::Utf8Bytes;
use codegraph_shared::event::StreamId;

use crate::budget::MemoryBudget;

/// One text frame and, for a stream entry, when Redis published it (the stream id's milliseconds), for the
/// latency histogram and the client's lag, and how many changes it carries, for the change counter.
#[derive(Clone, Debug)]
pub struct Frame {
    pub text: Utf8Bytes,
    pub published_ms: Option<u64>,
    pub changes: u32,
}

impl Frame {
    pub fn control(text: impl Into<Utf8Bytes>) -> Self {
        Self { text: text.into(), published_ms: None, changes: 0 }
    }

    /// A frame of the stream entry `id` carrying `changes` changes.
    pub fn entry(text: Utf8Bytes, id: StreamId, changes: usize) -> Self {
        Self { text, published_ms: Some(id.ms), changes: changes.try_into().unwrap_or(u32::MAX) }
    }
}

/// The outbox would pass its byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

pub struct Outbox {
    frames: VecDeque<Frame>,
    bytes: usize,
    limit: usize,
    /// Bytes the writer has taken and not yet written (still charged to the budget).
    in_flight: usize,
    budget: Arc<MemoryBudget>,
}

impl Outbox {
    pub fn new(limit: usize, budget: Arc<MemoryBudget>) -> Self {
        Self { frames: VecDeque::new(), bytes: 0, limit, in_flight: 0, budget }
    }

    /// Queues a frame unless that would pass the byte limit. A frame larger than the whole limit is still taken
    /// when the outbox is empty, so an oversized event cannot wedge a client that keeps up.
    pub fn push(&mut self, frame: Frame) -> Result<(), Overflow> {
        let len = frame.text.len();
        if self.bytes + len > self.limit && !self.frames.is_empty() {
            return Err(Overflow);
        }
        self.bytes += len;
        self.budget.charge(len);
        self.frames.push_back(frame);
        Ok(())
    }

    /// True when a replayed frame of `len` bytes fits in the replay half of the outbox and of the gateway's
    /// budget. An empty outbox always takes one, so every replay makes progress, a frame at a time at worst.
    pub fn has_room_for_replay(&self, len: usize) -> bool {
        self.frames.is_empty() || (self.bytes + len <= self.limit / 2 && self.budget.has_room_for_replay(len))
    }

    /// Moves every queued frame to `out` (in order), emptying the outbox; their bytes stay charged (in flight)
    /// until [`Outbox::written`].
    pub fn take_into(&mut self, out: &mut VecDeque<Frame>) {
        if out.is_empty() {
            std::mem::swap(&mut self.frames, out);
        } else {
            out.append(&mut self.frames);
        }
        self.in_flight += self.bytes;
        self.bytes = 0;
    }

    /// Everything taken so far has been written to the socket.
    pub fn written(&mut self) {
        self.budget.release(std::mem::take(&mut self.in_flight));
    }

    /// Drops everything queued (the client is being cut); what the writer holds is its to drop.
    pub fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.budget.release(std::mem::take(&mut self.bytes) + std::mem::take(&mut self.in_flight));
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes charged to the budget for this client: queued and being written.
    pub fn held(&self) -> usize {
        self.bytes + self.in_flight
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// When the oldest queued event was published, for the client's lag.
    pub fn oldest_published_ms(&self) -> Option<u64> {
        self.frames.iter().find_map(|f| f.published_ms)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.budget.release(self.bytes + self.in_flight);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("frames", &self.frames.len()).field("bytes", &self.bytes).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(limit: usize) -> Outbox {
        Outbox::new(limit, MemoryBudget::unlimited())
    }

    fn frame(n: usize) -> Frame {
        Frame::control("x".repeat(n))
    }

    #[test]
    fn refuses_what_would_pass_the_limit() {
        let mut o = outbox(10);
        o.push(frame(6)).unwrap();
        o.push(frame(4)).unwrap();
        assert_eq!(o.push(frame(1)), Err(Overflow));
        assert_eq!((o.len(), o.bytes()), (2, 10));
    }

    #[test]
    fn an_oversized_frame_still_goes_alone() {
        let mut o = outbox(10);
        o.push(frame(50)).unwrap();
        assert_eq!(o.push(frame(1)), Err(Overflow));
    }

    #[test]
    fn taking_empties_and_keeps_order() {
        let mut o = outbox(100);
        for n in 1..=3 {
            o.push(frame(n)).unwrap();
        }
        let mut out = VecDeque::from([frame(9)]);
        o.take_into(&mut out);
        assert_eq!(out.iter().map(|f| f.text.len()).collect::<Vec<_>>(), [9, 1, 2, 3]);
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
        o.push(frame(100)).unwrap();
    }

    #[test]
    fn replays_use_half_the_outbox() {
        let mut o = outbox(100);
        assert!(o.has_room_for_replay(1000));
        o.push(frame(40)).unwrap();
        assert!(o.has_room_for_replay(10));
        assert!(!o.has_room_for_replay(11));
    }
}
