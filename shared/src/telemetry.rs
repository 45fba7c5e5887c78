//! Logs (tracing) and metrics (Prometheus) set-up, the same in every service.

use std::io::IsTerminal;

use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber (`RUST_LOG`, default `info`; `LOG_FORMAT=json`
/// for machine-readable lines) and the Prometheus recorder. Colours only
/// on a terminal: in a log file or a pipe they are noise to grep through,
/// and the formatter would paint every span's fields for every request.
pub fn init(service: &'static str) -> PrometheusHandle {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let handle = PrometheusBuilder::new()
        .add_global_label("service", service)
        .install_recorder()
        .expect("the metrics recorder is installed once per process");
    tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    handle
}
