//! The chaos suite (`cargo test -p chaos-tests`; `CHAOS_LONG=1` for the long plan): every fault of
//! [`chaos_tests::Fault`] under steady load, then every client against the stream and every sink against Redis.
//! Prints the table recorded in docs/RELIABILITY.md and fails with every problem found.

use chaos_tests::{table, Cluster, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_under_any_fault() {
    let plan = Plan::from_env();
    let started = std::time::Instant::now();
    let mut cluster = Cluster::start(plan.clone()).await;
    let rows = cluster.run().await;
    println!("\n{plan:?}, {:.0} s\n\n{}", started.elapsed().as_secs_f64(), table(&rows));
    let problems: Vec<String> =
        rows.iter().flat_map(|r| r.problems.iter().map(move |p| format!("{}: {p}", r.fault.label()))).collect();
    assert!(rows.iter().all(|r| r.lost == 0 && r.out_of_order == 0), "events lost or out of order:\n{}", table(&rows));
    assert!(problems.is_empty(), "{}\n{}", table(&rows), problems.join("\n"));
}
