//! The entries of a batch, decoded in stream order for the worker. A large batch (a backlog) is decoded on a
//! blocking thread of its own, one entry after another, while the worker commits what was decoded before: the
//! decoding of a commit's change sets overlaps the sink's work on the previous commit instead of coming before
//! every commit of the batch. A small batch (the usual live case) is decoded in place.

use codegraph_shared::event::{ChangeSet, StreamId};
use tokio::sync::mpsc;

use crate::stream::Entry;

/// Bodies of at least this many bytes in total are decoded on their own thread (a few commits' worth).
const BACKGROUND_BYTES: usize = 256 * 1024;

/// Decoded entries ahead of the worker, at most: enough to keep the next commit ready, bounded in memory.
const AHEAD: usize = 64;

/// One entry of the batch, in stream order.
pub enum Decoded {
    /// At or below the ID the sink recorded when the batch began: acknowledge without applying.
    Applied(StreamId),
    /// Pending, then trimmed before it was applied.
    Trimmed(StreamId),
    /// Its change set, with the envelope as stored (what a dead letter keeps).
    Set { set: ChangeSet, body: String },
    /// An envelope that cannot be decoded: the error, and the body as stored.
    Poison { id: StreamId, body: String, error: String },
}

fn decode(entry: Entry, applied: Option<StreamId>) -> Decoded {
    if applied.is_some_and(|last| entry.id <= last) {
        return Decoded::Applied(entry.id);
    }
    let Some(body) = entry.body else { return Decoded::Trimmed(entry.id) };
    match ChangeSet::from_stream_entry(&entry.id.to_string(), &body) {
        Ok(set) => Decoded::Set { set, body },
        Err(e) => Decoded::Poison { id: entry.id, body, error: e.to_string() },
    }
}

/// The decoded entries of one batch. Dropping it stops a background decoder at its next entry.
pub enum DecodedBatch {
    InPlace { entries: std::vec::IntoIter<Entry>, applied: Option<StreamId> },
    Background(mpsc::Receiver<Decoded>),
}

impl DecodedBatch {
    /// `entries` in stream order; `applied`: the ID the sink recorded (what is at or below it is not decoded).
    pub fn new(entries: Vec<Entry>, applied: Option<StreamId>) -> Self {
        let bytes: usize = entries.iter().map(|e| e.body.as_ref().map_or(0, String::len)).sum();
        if bytes < BACKGROUND_BYTES {
            return Self::InPlace { entries: entries.into_iter(), applied };
        }
        let (tx, rx) = mpsc::channel(AHEAD);
        tokio::task::spawn_blocking(move || {
            for entry in entries {
                if tx.blocking_send(decode(entry, applied)).is_err() {
                    return; // The worker stopped reading this batch.
                }
            }
        });
        Self::Background(rx)
    }

    /// The next entry; `None` after the last.
    pub async fn next(&mut self) -> Option<Decoded> {
        match self {
            Self::InPlace { entries, applied } => entries.next().map(|e| decode(e, *applied)),
            Self::Background(rx) => rx.recv().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use codegraph_shared::event::{EventType, CHANGE_SET_TYPE};

    use super::*;

    fn entry(seq: u64, body: Option<String>) -> Entry {
        Entry { id: StreamId::new(1, seq), body }
    }

    fn kinds(batch: Vec<Entry>, applied: Option<StreamId>) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        rt.block_on(async {
            let mut decoded = DecodedBatch::new(batch, applied);
            let mut out = Vec::new();
            while let Some(d) = decoded.next().await {
                out.push(match d {
                    Decoded::Applied(id) => format!("applied {id}"),
                    Decoded::Trimmed(id) => format!("trimmed {id}"),
                    Decoded::Set { set, .. } => format!("set {} of {}", set.id, set.changes.len()),
                    Decoded::Poison { id, .. } => format!("poison {id}"),
                });
            }
            out
        })
    }

    /// Both ways (in place, and on a thread for a batch past [`BACKGROUND_BYTES`]) give every entry, in order.
    #[test]
    fn small_and_large_batches_decode_alike_in_stream_order() {
        let set = |from: usize, n: usize| {
            let changes: Vec<_> = (from..from + n)
                .map(|i| {
                    let data = serde_json::json!({"id": format!("n{i}"), "kind": "file", "name": "x".repeat(200)});
                    crate::test_support::change(EventType::NodeAdded, &format!("n{i}"), 1, data)
                })
                .collect();
            serde_json::json!({"project": "p", "type": CHANGE_SET_TYPE, "changes": changes}).to_string()
        };
        for sets in [3, 3 * 1024] {
            let mut batch = vec![entry(1, Some(set(0, 2))), entry(2, None), entry(3, Some("not json".into()))];
            batch.extend((4..=sets as u64).map(|seq| entry(seq, Some(set(seq as usize * 2, 2)))));
            let bytes: usize = batch.iter().map(|e| e.body.as_ref().map_or(0, String::len)).sum();
            assert_eq!(bytes >= BACKGROUND_BYTES, sets > 3, "the large batch goes to a thread: {bytes} bytes");
            let got = kinds(batch, Some(StreamId::new(1, 1)));
            assert_eq!(got.len(), sets);
            assert_eq!(got[..3], ["applied 1-1", "trimmed 1-2", "poison 1-3"]);
            assert!(got[3..].iter().enumerate().all(|(i, k)| *k == format!("set 1-{} of 2", i + 4)), "{got:?}");
        }
    }
}
