//! Structured logs, OpenTelemetry traces and W3C `traceparent` propagation
//! across gRPC metadata and Kafka headers.

use std::collections::HashMap;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetryConfig;

/// Flushes and stops trace export when dropped.
pub struct TelemetryGuard {
    tracer_provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.tracer_provider.shutdown() {
            eprintln!("failed to flush traces: {error}");
        }
    }
}

/// Installs the global subscriber. Spans always get W3C trace context (so
/// `traceparent` flows between services); they are exported only when
/// `otlp_endpoint` is set.
pub fn init(config: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_owned()).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint.clone());
        // An https:// collector is reached over TLS with its CA, never in
        // the clear.
        let exporter = if endpoint.starts_with("https://") {
            let tls = crate::tls::Tls::load(&crate::config::TlsConfig {
                ca_file: config.otlp_ca_file.clone(),
                ..crate::config::TlsConfig::default()
            })?;
            exporter.with_channel(crate::grpc::lazy_channel(endpoint, Some(&tls))?)
        } else {
            exporter
        };
        builder = builder.with_batch_exporter(exporter.build()?);
    }
    let tracer_provider = builder.build();
    let tracer = tracer_provider.tracer("switchboard");
    global::set_tracer_provider(tracer_provider.clone());

    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.log_filter))?;
    let format_layer = if config.log_format == "json" {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_target(true).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(format_layer)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()?;
    Ok(TelemetryGuard { tracer_provider })
}

/// The `traceparent` of the current span, if it has trace context.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span named by `traceparent`.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let mut carrier: HashMap<String, String> = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    let context = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    let _ignored_when_no_otel_layer = span.set_parent(context);
}
