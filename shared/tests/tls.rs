//! TLS for real: redis-server on its `--tls-port` with a CA made by the test (`testing::TestCa`), reached through
//! `RedisHandle` as every service reaches it; and the OTLP exporter over HTTPS through a TLS-terminating nginx.
//! Shows that a `rediss://` URL with the right CA writes and reads (the Function library included), that a wrong
//! CA or a plain `redis://` to the TLS port is refused with a clear, retryable error and writes nothing, that an
//! outage over TLS recovers, and that mutual TLS works when the server demands a client certificate.

use std::time::{Duration, Instant};

use codegraph_shared::{
    functions::{ensure_loaded, is_unavailable},
    redis_handle::{RedisHandle, RedisTls},
    testing::{OtlpReceiver, RedisServer, TestCa, TlsProxy},
};
use redis::AsyncCommands;

fn trusting(ca: &TestCa) -> RedisTls {
    RedisTls { ca_file: Some(ca.ca_file()), ..Default::default() }
}

/// Waits until `condition` holds, or panics after `deadline`.
async fn eventually(deadline: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !condition().await {
        assert!(start.elapsed() < deadline, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rediss_with_the_private_ca_writes_and_reads() {
    let ca = TestCa::new();
    let server = RedisServer::start_tls(&ca, &[]);
    assert!(server.url().starts_with("rediss://"));
    let redis = RedisHandle::open_with(&server.url(), &trusting(&ca)).unwrap();
    let mut conn = redis.conn();
    ensure_loaded(&mut conn).await.expect("the Function library loads over TLS");
    let version: i64 = redis::cmd("FCALL_RO").arg("cg_version").arg(0).query_async(&mut conn).await.unwrap();
    assert!(version > 0);
    let _: () = conn.set("tls:key", "over tls").await.unwrap();
    let read: String = conn.get("tls:key").await.unwrap();
    assert_eq!(read, "over tls");
    // Dedicated connections (Pub/Sub, blocking reads) carry the same TLS configuration.
    let mut blocking = redis.blocking_connection(Duration::from_secs(1)).await.unwrap();
    let read: String = blocking.get("tls:key").await.unwrap();
    assert_eq!(read, "over tls");
    let mut pubsub = redis.single_client().unwrap().get_async_pubsub().await.expect("Pub/Sub over TLS");
    pubsub.subscribe("tls:channel").await.unwrap();
    // The harness's own connection speaks TLS too.
    let direct: String = redis::cmd("GET").arg("tls:key").query(&mut server.connection()).unwrap();
    assert_eq!(direct, "over tls");
}

#[tokio::test]
async fn a_wrong_ca_is_refused_and_nothing_is_written() {
    let (ca, stranger) = (TestCa::new(), TestCa::new());
    let server = RedisServer::start_tls(&ca, &[]);
    let redis = RedisHandle::open_with(&server.url(), &trusting(&stranger)).unwrap();
    assert!(!redis.ping().await);
    let mut conn = redis.conn();
    let e = conn.set::<_, _, ()>("tls:wrong", "x").await.unwrap_err();
    assert!(is_unavailable(&e), "a refused handshake is an outage to retry (503), not a bad request: {e:?}");
    let text = format!("{e}");
    assert!(text.contains("invalid peer certificate: UnknownIssuer"), "the error says why: {text}");
    // The system's roots do not know a private CA either.
    let system = RedisHandle::open_with(&server.url(), &RedisTls::default()).unwrap();
    assert!(!system.ping().await);
    let exists: bool = redis::cmd("EXISTS").arg("tls:wrong").query(&mut server.connection()).unwrap();
    assert!(!exists, "nothing was written through a refused connection");
}

#[tokio::test]
async fn plain_redis_to_the_tls_port_fails_cleanly() {
    let ca = TestCa::new();
    let server = RedisServer::start_tls(&ca, &[]);
    let plain_url = server.url().replacen("rediss://", "redis://", 1);
    let redis = RedisHandle::open(&plain_url).unwrap();
    let start = Instant::now();
    let e = redis.conn().set::<_, _, ()>("tls:plain", "x").await.unwrap_err();
    assert!(is_unavailable(&e), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(15), "failed, but only after {:?}", start.elapsed());
    let exists: bool = redis::cmd("EXISTS").arg("tls:plain").query(&mut server.connection()).unwrap();
    assert!(!exists);
    // And TLS files given with a plain URL are a configuration error, not silently ignored.
    let e = RedisHandle::open_with(&plain_url, &trusting(&ca)).unwrap_err();
    assert!(e.to_string().contains("not a rediss:// URL"), "{e}");
}

#[tokio::test]
async fn only_a_url_that_says_insecure_skips_verification() {
    let ca = TestCa::new();
    let server = RedisServer::start_tls(&ca, &[]);
    let unverified = RedisHandle::open_with(&format!("{}/#insecure", server.url()), &RedisTls::default()).unwrap();
    assert!(unverified.ping().await, "#insecure: encrypted, any certificate");
    let verified = RedisHandle::open_with(&server.url(), &RedisTls::default()).unwrap();
    assert!(!verified.ping().await, "without it the certificate is verified (and unknown to the system's roots)");
}

#[tokio::test]
async fn an_outage_over_tls_recovers() {
    let ca = TestCa::new();
    let mut server = RedisServer::start_tls(&ca, &[]);
    let redis = RedisHandle::open_with(&server.url(), &trusting(&ca)).unwrap();
    assert!(redis.ping().await);
    server.stop();
    let e = redis.conn().get::<_, Option<String>>("k").await.unwrap_err();
    assert!(is_unavailable(&e), "{e:?}");
    server.restart();
    eventually(Duration::from_secs(15), "the handle reconnects over TLS", async || redis.ping().await).await;
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new();
    let server = RedisServer::start_tls(&ca, &["--tls-auth-clients", "yes"]);
    let anonymous = RedisHandle::open_with(&server.url(), &trusting(&ca)).unwrap();
    assert!(!anonymous.ping().await, "the server demands a client certificate");
    let tls = RedisTls { cert_file: Some(ca.client_cert()), key_file: Some(ca.client_key()), ..trusting(&ca) };
    let redis = RedisHandle::open_with(&server.url(), &tls).unwrap();
    assert!(redis.ping().await);
}

/// The only test here that installs the global subscriber (one per process): traces leave over HTTPS, trusted
/// through `otlp_ca_file`, and arrive at the receiver behind the TLS proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_export_over_https_with_a_private_ca() {
    let ca = TestCa::new();
    let receiver = OtlpReceiver::start().await;
    let port: u16 = receiver.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = TlsProxy::start(&ca, port);
    let settings = codegraph_shared::settings::TelemetrySettings {
        otlp_endpoint: format!("https://localhost:{}", proxy.port),
        otlp_ca_file: ca.ca_file().to_string_lossy().into_owned(),
        ..Default::default()
    };
    let guard = codegraph_shared::telemetry::init("tls-test", &settings);
    tracing::info_span!("over_https").in_scope(|| tracing::info!("inside"));
    // Dropping the guard flushes the batch (a blocking export: off the runtime's threads).
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();
    receiver
        .wait_for(Duration::from_secs(10), "span over HTTPS", |spans| {
            spans.iter().any(|s| s.name == "over_https" && s.service == "tls-test")
        })
        .await;
}
