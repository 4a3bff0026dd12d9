//! The job record sweep against a real redis-server: the job → project index loses the entries whose job hash
//! expired (or whose project name is malformed), a finished job without a time to live gets one, and queued
//! or running jobs are left exactly as they were.

use std::time::Duration;

use analysis_worker::retention::{sweep, Swept};
use codegraph_shared::{
    names::{RedisNames, JOB_PROJECTS_KEY},
    project::ProjectName,
    testing::RedisServer,
};

fn job_key(project: &str, job_id: &str) -> String {
    RedisNames::new(&ProjectName::parse(project).unwrap()).job(job_id)
}

/// A job hash with `status` and its index entry, as graph-api writes them.
fn record(conn: &mut redis::Connection, project: &str, job_id: &str, status: &str) {
    redis::pipe()
        .hset(job_key(project, job_id), "status", status)
        .hset(JOB_PROJECTS_KEY, job_id, project)
        .query::<()>(conn)
        .unwrap();
}

fn ttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query(conn).unwrap()
}

#[tokio::test]
async fn the_sweep_keeps_the_job_index_in_step_with_the_job_records() {
    let redis = RedisServer::start();
    let mut conn = redis.connection();
    record(&mut conn, "p", "queued", "queued");
    record(&mut conn, "p", "running", "running");
    record(&mut conn, "p", "old-finished", "completed");
    record(&mut conn, "q", "failed", "failed");
    // Index entries whose job hash is gone (expired), and one naming no valid project.
    for i in 0..1200 {
        redis::cmd("HSET").arg(JOB_PROJECTS_KEY).arg(format!("gone-{i}")).arg("p").query::<()>(&mut conn).unwrap();
    }
    redis::cmd("HSET").arg(JOB_PROJECTS_KEY).arg("bad").arg("not a project!").query::<()>(&mut conn).unwrap();

    let mut async_conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let swept = sweep(&mut async_conn, Some(Duration::from_secs(500))).await.unwrap();
    assert_eq!(swept, Swept { checked: 1205, removed: 1201, expired: 2 });

    let left: Vec<String> = redis::cmd("HKEYS").arg(JOB_PROJECTS_KEY).query(&mut conn).unwrap();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["failed", "old-finished", "queued", "running"]);
    assert_eq!(ttl(&mut conn, &job_key("p", "queued")), -1, "a queued job must not expire");
    assert_eq!(ttl(&mut conn, &job_key("p", "running")), -1, "a running job must not expire");
    assert!((1..=500).contains(&ttl(&mut conn, &job_key("p", "old-finished"))));
    assert!((1..=500).contains(&ttl(&mut conn, &job_key("q", "failed"))));

    // Once the finished records expire, their index entries go with the next sweep.
    for (p, j) in [("p", "old-finished"), ("q", "failed")] {
        redis::cmd("PEXPIRE").arg(job_key(p, j)).arg(1).query::<()>(&mut conn).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while redis::cmd("EXISTS").arg(job_key("q", "failed")).query::<i64>(&mut conn).unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "the record did not expire");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let again = sweep(&mut async_conn, Some(Duration::from_secs(500))).await.unwrap();
    assert_eq!(again.removed, 2, "{again:?}");
    let mut left: Vec<String> = redis::cmd("HKEYS").arg(JOB_PROJECTS_KEY).query(&mut conn).unwrap();
    left.sort();
    assert_eq!(left, ["queued", "running"]);

    // With finished jobs kept forever, only vanished records lose their entry.
    record(&mut conn, "p", "kept", "completed");
    let kept = sweep(&mut async_conn, None).await.unwrap();
    assert_eq!(kept, Swept { checked: 3, removed: 0, expired: 0 });
    assert_eq!(ttl(&mut conn, &job_key("p", "kept")), -1);
}
