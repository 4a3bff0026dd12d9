//! A client's outbox: the frames waiting to be written to its socket, bounded in bytes.
//!
//! The fan-out pushes live entries here and never waits: a push that would take the outbox past its limit fails,
//! and the caller closes the client with 4008 (it resumes from its last id on reconnect). So one slow client can
//! neither slow the others nor grow memory without bound. Replays from the stream, which can wait, only fill the
//! outbox to half its limit ([`Outbox::has_room_for_replay`]), leaving the other half to live traffic.

use std::collections::VecDeque;

use axum::extract::ws::Utf8Bytes;
use codegraph_shared::event::StreamId;

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

#[derive(Debug)]
pub struct Outbox {
    frames: VecDeque<Frame>,
    bytes: usize,
    limit: usize,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self { frames: VecDeque::new(), bytes: 0, limit }
    }

    /// Queues a frame unless that would pass the byte limit. A frame larger than the whole limit is still taken
    /// when the outbox is empty, so an oversized event cannot wedge a client that keeps up.
    pub fn push(&mut self, frame: Frame) -> Result<(), Overflow> {
        let len = frame.text.len();
        if self.bytes + len > self.limit && !self.frames.is_empty() {
            return Err(Overflow);
        }
        self.bytes += len;
        self.frames.push_back(frame);
        Ok(())
    }

    /// True when a replayed frame of `len` bytes fits in the replay half of the outbox.
    pub fn has_room_for_replay(&self, len: usize) -> bool {
        self.frames.is_empty() || self.bytes + len <= self.limit / 2
    }

    /// Moves every queued frame to `out` (in order), emptying the outbox.
    pub fn take_into(&mut self, out: &mut VecDeque<Frame>) {
        if out.is_empty() {
            std::mem::swap(&mut self.frames, out);
        } else {
            out.append(&mut self.frames);
        }
        self.bytes = 0;
    }

    /// Drops everything queued (the client is being cut).
    pub fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Frame {
        Frame::control("x".repeat(n))
    }

    #[test]
    fn refuses_what_would_pass_the_limit() {
        let mut o = Outbox::new(10);
        o.push(frame(6)).unwrap();
        o.push(frame(4)).unwrap();
        assert_eq!(o.push(frame(1)), Err(Overflow));
        assert_eq!((o.len(), o.bytes()), (2, 10));
    }

    #[test]
    fn an_oversized_frame_still_goes_alone() {
        let mut o = Outbox::new(10);
        o.push(frame(50)).unwrap();
        assert_eq!(o.push(frame(1)), Err(Overflow));
    }

    #[test]
    fn taking_empties_and_keeps_order() {
        let mut o = Outbox::new(100);
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
        let mut o = Outbox::new(100);
        assert!(o.has_room_for_replay(1000));
        o.push(frame(40)).unwrap();
        assert!(o.has_room_for_replay(10));
        assert!(!o.has_room_for_replay(11));
    }
}
