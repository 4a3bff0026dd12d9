//! Finds the publish timestamps (`"t":<micros>`) and counts the changes (`"entity":`) in a byte stream that
//! arrives in chunks of any size.
//!
//! Both kinds of receiver (WebSocket clients of the gateway and plain Redis Pub/Sub subscribers) read raw bytes
//! and count these markers, so neither pays for a parser the other skips: each publication (one stream entry, one
//! frame) carries exactly one timestamp, so one timestamp is one delivered frame; and each change carries exactly
//! one `entity`, in either form of entry (a change set's changes, or a single event), while the load's data has
//! no key of that name, so the `entity` keys count the delivered changes. The searches are SIMD (`memmem`): the
//! receivers share the cores with the gateway they measure, so they should spend as little as they can per byte.

use memchr::memmem;

const MARKER: &[u8] = b"\"t\":";
/// A marker and its digits never span more than this (4 + 20 digits).
const LONGEST: usize = MARKER.len() + 20;

#[derive(Default)]
pub struct MarkerScanner {
    carry: Vec<u8>,
}

impl MarkerScanner {
    /// Calls `found` with each complete timestamp in `chunk` (and in what earlier chunks left unfinished).
    pub fn feed(&mut self, chunk: &[u8], mut found: impl FnMut(u64)) {
        if self.carry.is_empty() {
            let rest = scan(chunk, &mut found);
            self.carry.extend_from_slice(&chunk[rest..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let buf = std::mem::take(&mut self.carry);
            let rest = scan(&buf, &mut found);
            self.carry.extend_from_slice(&buf[rest..]);
        }
    }
}

/// The key every change has once, in either form of entry.
const CHANGE: &[u8] = b"\"entity\":";

/// Counts changes (see the module doc) across chunks.
#[derive(Default)]
pub struct ChangeCounter {
    /// The last bytes of the previous chunk, which may hold the start of a key.
    carry: Vec<u8>,
}

impl ChangeCounter {
    /// The changes whose key ends in `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        // The carry is shorter than a key, so a key found in carry + the head of `chunk` straddles the two.
        let keep = CHANGE.len() - 1;
        let carried = self.carry.len();
        self.carry.extend_from_slice(&chunk[..chunk.len().min(keep)]);
        let straddling = memmem::find_iter(&self.carry, CHANGE).count();
        let inside = memmem::find_iter(chunk, CHANGE).count();
        if chunk.len() >= keep {
            self.carry.clear();
            self.carry.extend_from_slice(&chunk[chunk.len() - keep..]);
        } else {
            // A short chunk: the tail of the earlier chunks stays in front of it.
            self.carry.truncate(carried);
            self.carry.extend_from_slice(chunk);
            let excess = self.carry.len().saturating_sub(keep);
            self.carry.drain(..excess);
        }
        (straddling + inside) as u64
    }
}

/// Scans `buf`; returns where the unfinished tail starts.
fn scan(buf: &[u8], found: &mut impl FnMut(u64)) -> usize {
    let mut done = 0;
    let mut i = 0;
    while let Some(at) = memmem::find(&buf[i..], MARKER) {
        i += at;
        let digits = &buf[i + MARKER.len()..];
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == digits.len() {
            // The number may go on in the next chunk.
            return i;
        }
        if n > 0 {
            let value = digits[..n].iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            found(value);
        }
        i += MARKER.len() + n;
        done = i;
    }
    // Keep the last bytes: they may hold the start of a marker.
    done.max(buf.len().saturating_sub(LONGEST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_across_any_split() {
        let stream = br#"{"id":"1-0","type":"x","data":{"t":12345},"ts":"z"}junk{"data":{"t":7}}{"t":99,"x":1}"#;
        for split in 0..stream.len() {
            for split2 in split..stream.len() {
                let mut s = MarkerScanner::default();
                let mut got = Vec::new();
                s.feed(&stream[..split], |t| got.push(t));
                s.feed(&stream[split..split2], |t| got.push(t));
                s.feed(&stream[split2..], |t| got.push(t));
                assert_eq!(got, [12345, 7, 99], "split at {split}/{split2}");
            }
        }
    }

    #[test]
    fn counts_changes_of_both_forms_across_any_split() {
        let set = br#"{"id":"1-0","type":"change_set","changes":[{"type":"node_updated","entity":{"kind":"node","id":"a"},"data":{"t":5}},{"type":"node_updated","entity":{"kind":"node","id":"b"}}]}"#;
        let single = br#"{"id":"2-0","type":"analysis_progress","entity":{"kind":"job","id":"j"},"data":{"t":6}}"#;
        let stream = [&set[..], &single[..], &set[..]].concat();
        for split in 0..stream.len() {
            for split2 in split..stream.len() {
                let mut c = ChangeCounter::default();
                let n = c.feed(&stream[..split]) + c.feed(&stream[split..split2]) + c.feed(&stream[split2..]);
                assert_eq!(n, 5, "split at {split}/{split2}");
            }
        }
        for size in 1..12 {
            let mut c = ChangeCounter::default();
            assert_eq!(stream.chunks(size).map(|chunk| c.feed(chunk)).sum::<u64>(), 5, "chunks of {size}");
        }
    }
}
