//! A lease with generations: one process at a time holds a named piece of work (a project's stream for a sink,
//! a project's watched folder), the others take it over when the holder stops renewing it.
//!
//! The lease key holds the owner's name and expires unless the owner renews it; beside it (same hash slot) a
//! counter of the hand-overs. Every take — of a free lease, of one's own after a restart (a name belongs to one
//! live process, so its earlier life is gone), or by force — increments the generation in the same script, and
//! the holder acts under that generation (its fencing token: what it writes can be refused once a newer generation
//! exists). Renewal succeeds only for the same owner and generation.

use std::sync::LazyLock;

use redis::{aio::ConnectionLike, RedisError, Script};

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

/// Whether `generation` is still the newest of the counter at `generation_key` (no one took the lease since).
pub async fn is_current<C: ConnectionLike + Send>(
    conn: &mut C,
    generation_key: &str,
    generation: u64,
) -> Result<bool, RedisError> {
    let current: Option<u64> = redis::cmd("GET").arg(generation_key).query_async(conn).await?;
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
    /// A lease at `key` with its counter at `generation_key` (both in one hash slot), not taken yet.
    pub fn new(key: String, generation_key: String, owner: String, ttl_ms: u64) -> Self {
        Self { key, generation_key, owner, ttl_ms, generation: 0 }
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
