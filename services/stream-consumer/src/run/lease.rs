//! The ownership lease of one project's stream for one sink: the key `code_graph:{p}:cdc:owner:<sink>` holds the
//! owner's consumer name and expires unless the owner renews it; beside it, `…:owner:<sink>:generation` counts
//! the hand-overs.
//!
//! Only the holder applies the project's events to the sink, which is what keeps per-entity order with several
//! processes. Every take — of a free lease, of one's own lease after a restart (its earlier life is gone, since a
//! name belongs to one live process), or by force (`replay`) — increments the generation in the same script, and
//! the holder writes to the sink under that generation (its fencing token): the sink refuses writes of an older
//! generation, so an owner that was paused past its lease cannot write after its successor
//! ([`crate::sinks`]). Renewal succeeds only for the same owner and generation. The scripts are
//! [`codegraph_shared::lease`], which the analysis-worker's watches use too.

use redis::{aio::ConnectionLike, RedisError};

use codegraph_shared::names::RedisNames;

pub use codegraph_shared::lease::Lease;

/// Whether `generation` is still the lease's newest (no one took the lease since).
pub async fn is_current<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    sink: &str,
    generation: u64,
) -> Result<bool, RedisError> {
    codegraph_shared::lease::is_current(conn, &names.cdc_owner_generation(sink), generation).await
}

/// The lease of `sink` on the project of `names`, not taken yet.
pub fn for_sink(names: &RedisNames, sink: &str, owner: String, ttl_ms: u64) -> Lease {
    Lease::new(names.cdc_owner(sink), names.cdc_owner_generation(sink), owner, ttl_ms)
}
