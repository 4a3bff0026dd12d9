//! The ownership lease of one project's stream for one sink: the key `code_graph:{p}:cdc:owner:<sink>` holds the
//! owner's consumer name and expires unless the owner renews it; beside it, `…:owner:<sink>:generation` counts
//! the hand-overs.
//!
//! Only the holder applies the project's events to the sink, which is what keeps per-entity order with several
//! processes. Every take — of a free lease, of one's own lease after a restart (its earlier life is gone, since a
//! name belongs to one live process), or by force (`replay`) — increments the generation in the same script, and
//! the holder writes to the sink under that generation (its fencing token): the sink refuses writes of an older
//! generation, so an owner that was paused past its lease cannot write after its successor
//! ([`crate::sinks`]). Renewal succeeds only for the same owner and generation.

use std::sync::LazyLock;

use redis::{aio::ConnectionLike, RedisError, Script};

use codegraph_shared::names::RedisNames;

/// KEYS: lease, generation. ARGV: owner, ttl. The new generation, or 0 when another owner holds the lease.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('GET', KEYS[1])
          if cur and cur ~= ARGV[1] then return 0 end
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return redis.call('INCR', KEYS[2])",
    )
});

/// KEYS: lease, generation. ARGV: owner, ttl. `{previous owner or false, new generation}`.
static TAKE_OVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('GET', KEYS[1])
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
          return {cur, redis.call('INCR', KEYS[2])}",
    )
});

/// KEYS: lease, generation. ARGV: owner, ttl, generation.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
            return redis.call('PEXPIRE', KEYS[1], ARGV[2])
          end
          return 0",
    )
});

/// KEYS: lease, generation. ARGV: owner, generation.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
            return redis.call('DEL', KEYS[1])
          end
          return 0",
    )
});

/// Whether `generation` is still the lease's newest (no one took the lease since).
pub async fn is_current<C: ConnectionLike + Send>(
    conn: &mut C,
    names: &RedisNames,
    sink: &str,
    generation: u64,
) -> Result<bool, RedisError> {
    let current: Option<u64> = redis::cmd("GET").arg(names.cdc_owner_generation(sink)).query_async(conn).await?;
    Ok(current == Some(generation))
}

#[derive(Clone, Debug)]
pub struct Lease {
    pub key: String,
    /// The counter of hand-overs beside the lease (same hash slot).
    pub generation_key: String,
    pub owner: String,
    pub ttl_ms: u64,
    /// The generation this owner took the lease with (0: not taken).
    pub generation: u64,
}

impl Lease {
    /// The lease of `sink` on the project of `names`.
    pub fn new(names: &RedisNames, sink: &str, owner: String, ttl_ms: u64) -> Self {
        Self {
            key: names.cdc_owner(sink),
            generation_key: names.cdc_owner_generation(sink),
            owner,
            ttl_ms,
            generation: 0,
        }
    }

    /// Takes the lease when it is free or already ours, with a new generation. True when we hold it.
    pub async fn take<C: ConnectionLike + Send>(&mut self, conn: &mut C) -> Result<bool, RedisError> {
        let generation: u64 =
            TAKE.key(&self.key).key(&self.generation_key).arg(&self.owner).arg(self.ttl_ms).invoke_async(conn).await?;
        self.generation = generation;
        Ok(generation > 0)
    }

    /// Takes the lease even from a live owner, with a new generation; returns the previous owner.
    pub async fn take_over<C: ConnectionLike + Send>(&mut self, conn: &mut C) -> Result<Option<String>, RedisError> {
        let (previous, generation): (Option<String>, u64) = TAKE_OVER
            .key(&self.key)
            .key(&self.generation_key)
            .arg(&self.owner)
            .arg(self.ttl_ms)
            .invoke_async(conn)
            .await?;
        self.generation = generation;
        Ok(previous.filter(|p| *p != self.owner))
    }

    /// Extends the lease if we still hold it with our generation. False: it expired or was taken.
    pub async fn renew<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool, RedisError> {
        let got: i64 = RENEW
            .key(&self.key)
            .key(&self.generation_key)
            .arg(&self.owner)
            .arg(self.ttl_ms)
            .arg(self.generation)
            .invoke_async(conn)
            .await?;
        Ok(got == 1)
    }

    /// Gives the lease up if we still hold it.
    pub async fn release<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        RELEASE
            .key(&self.key)
            .key(&self.generation_key)
            .arg(&self.owner)
            .arg(self.generation)
            .invoke_async::<i64>(conn)
            .await?;
        Ok(())
    }
}
