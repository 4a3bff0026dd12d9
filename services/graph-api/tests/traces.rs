//! graph-api exports its spans over OTLP when an endpoint is configured, as children of the caller's
//! `traceparent`, and puts the trace context into the events it writes.

mod common;

use std::time::Duration;

use codegraph_shared::testing::{OtlpReceiver, RedisServer};
use common::{node, stream_events, GraphApi};

#[tokio::test]
async fn a_mutation_continues_the_callers_trace_into_otlp_and_the_event() {
    let redis = RedisServer::start();
    let otlp = OtlpReceiver::start().await;
    let api = GraphApi::start_with(
        &redis,
        &[("CODEGRAPH__TELEMETRY__OTLP_ENDPOINT", otlp.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = api
        .http
        .post(api.url("/api/graph/nodes"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&node("traced", "file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    otlp.wait_for(Duration::from_secs(15), "graph-api span of the request's trace", |spans| {
        spans
            .iter()
            .any(|s| s.service == "graph-api" && s.trace_id == trace_id && s.parent_span_id == "00f067aa0ba902b7")
    })
    .await;
    let events = stream_events(&redis, "default");
    let tp = events[0].traceparent().expect("the event carries the trace context");
    assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
    let span_id = tp.split('-').nth(2).unwrap();
    assert!(otlp.spans().iter().any(|s| s.span_id == span_id), "the event's parent span was exported");
}
