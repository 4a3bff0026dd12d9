//! The ownership lease of one project's stream for one sink: the key `code_graph:{p}:cdc:owner:<sink>` holds the
//! owner's consumer name and expires unless the owner renews it.
//!
//! Only the holder applies the project's events to the sink, which is what keeps per-entity order with several
//! processes. A process finds its own lease on restart (same consumer name) and takes it back at once: its earlier
//! life is gone, since a name belongs to one live process.

use std::sync::LazyLock;

use redis::{aio::ConnectionLike, RedisError, Script};

static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local cur = redis.call('GET', KEYS[1])
          if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
          if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
          return 0",
    )
});

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
          return 0",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
          return 0",
    )
});

#[derive(Clone, Debug)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    pub ttl_ms: u64,
}

impl Lease {
    /// Takes the lease when it is free or already ours. True when we hold it.
    pub async fn take<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool, RedisError> {
        let got: i64 = TAKE.key(&self.key).arg(&self.owner).arg(self.ttl_ms).invoke_async(conn).await?;
        Ok(got == 1)
    }

    /// Extends the lease if we still hold it. False: it expired or someone else holds it.
    pub async fn renew<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<bool, RedisError> {
        let got: i64 = RENEW.key(&self.key).arg(&self.owner).arg(self.ttl_ms).invoke_async(conn).await?;
        Ok(got == 1)
    }

    /// Gives the lease up if we hold it.
    pub async fn release<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<(), RedisError> {
        RELEASE.key(&self.key).arg(&self.owner).invoke_async::<i64>(conn).await?;
        Ok(())
    }
}
