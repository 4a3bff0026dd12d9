//! Logs and traces for every service.
//!
//! Logs go to stderr, human-readable or JSON. Traces are exported over OTLP/HTTP (JSON) when an endpoint is
//! configured (`https://` speaks TLS with rustls: the system's roots, plus `otlp_ca_file` for a private CA); otherwise no OpenTelemetry layer is installed and spans cost what plain `tracing` spans cost.
//! The W3C trace context travels in the event envelope's `trace` field, so one trace spans the HTTP mutation,
//! the Redis Function call, the gateway's delivery and the sink's commit.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::settings::{LogFormat, TelemetrySettings};

/// Keeps the trace exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber for `service`. Call once, at start-up.
pub fn init(service: &str, settings: &TelemetrySettings) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The log filter applies to logs only: quieter logs must not switch traces off.
    let fmt = match settings.log_format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter).boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
    };

    let provider = (!settings.otlp_endpoint.is_empty()).then(|| tracer_provider(service, settings)).flatten();
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(service.to_owned()))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    // `try_init` so tests that start several services in one process keep the first subscriber.
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    if provider.is_some() {
        tracing::info!(endpoint = %settings.otlp_endpoint, "exporting traces over OTLP/HTTP");
    }
    TelemetryGuard { provider }
}

fn tracer_provider(service: &str, settings: &TelemetrySettings) -> Option<SdkTracerProvider> {
    let endpoint = format!("{}/v1/traces", settings.otlp_endpoint.trim_end_matches('/'));
    let builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .with_endpoint(endpoint);
    let builder = if settings.otlp_ca_file.is_empty() {
        builder // the exporter's own client: HTTPS against the system's roots
    } else {
        match http_client_trusting(&settings.otlp_ca_file) {
            Ok(client) => builder.with_http_client(client),
            Err(e) => {
                eprintln!("trace export disabled: {e}");
                return None;
            }
        }
    };
    let exporter = builder.build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("trace export disabled: {e}");
            return None;
        }
    };
    let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
        opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(settings.sample_ratio),
    ));
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(sampler)
            .with_resource(Resource::builder_empty().with_service_name(service.to_owned()).build())
            .build(),
    )
}

/// How long one export may take (the exporter's own default).
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The exporter's HTTP client with the CAs of the PEM file `ca_file` trusted besides the system's roots. Built on
/// a thread of its own: a blocking reqwest client owns a runtime, which cannot be made inside the caller's.
fn http_client_trusting(ca_file: &str) -> Result<reqwest::blocking::Client, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("OTLP CA file {ca_file}: {e}"))?;
    let cas = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("OTLP CA file {ca_file}: {e}"))?;
    if cas.is_empty() {
        return Err(format!("OTLP CA file {ca_file} holds no PEM certificate"));
    }
    std::thread::spawn(move || {
        cas.into_iter()
            .fold(reqwest::blocking::Client::builder().timeout(EXPORT_TIMEOUT), |b, ca| b.add_root_certificate(ca))
            .build()
            .map_err(|e| format!("OTLP HTTP client: {e}"))
    })
    .join()
    .map_err(|_| "OTLP HTTP client: its builder panicked".to_owned())?
}

/// The W3C `traceparent` of the current span, when traces are being recorded.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// Makes `span` a child of the remote span named by `traceparent` (from an HTTP header or an event envelope).
/// Does nothing for a malformed value or when traces are off.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if !is_traceparent(traceparent) {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// True for a well-formed W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4 && hex(parts[0], 2) && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_shape() {
        assert!(is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
        assert!(!is_traceparent("garbage"));
    }

    #[test]
    fn an_otlp_ca_file_must_hold_a_certificate() {
        assert!(http_client_trusting("/no/such/ca.pem").unwrap_err().contains("/no/such/ca.pem"));
        let empty = std::env::temp_dir().join(format!("codegraph-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = http_client_trusting(&empty.to_string_lossy()).unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn no_traceparent_without_an_exporter() {
        assert_eq!(current_traceparent(), None);
    }
}
