//! Prometheus metrics. One [`Metrics`] per gateway, passed explicitly (no global registry).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Latency buckets in microseconds, from 10 µs to 10 s.
const LATENCY_BUCKETS_US: &[f64] = &[
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    25_000.0,
    50_000.0,
    100_000.0,
    250_000.0,
    1_000_000.0,
    10_000_000.0,
];

/// Every metric the gateway exports.
#[derive(Clone)]
pub struct Metrics {
    /// The registry holding them, rendered by `/metrics`.
    pub registry: Registry,
    /// Client connections accepted since start.
    pub connections_total: IntCounter,
    /// Client connections open now.
    pub connections_active: IntGauge,
    /// Client connections refused, by reason (`max_connections`, `tls_required`, ...).
    pub connections_refused: IntCounterVec,
    /// Failed logins.
    pub auth_failures: IntCounter,
    /// Statements decided, by decision (`allow`, `deny`, `hold`).
    pub statements: IntCounterVec,
    /// Bytes relayed, by direction (`client_to_server`, `server_to_client`).
    pub bytes: IntCounterVec,
    /// Errors, by kind (`protocol`, `upstream`, `io`, `timeout`).
    pub errors: IntCounterVec,
    /// Time from forwarding a Query or Sync to the server's ReadyForQuery, in µs.
    pub query_latency_us: Histogram,
    /// Time spent analysing and deciding one message, in µs.
    pub decision_latency_us: Histogram,
    /// Parse-cache hits and misses (`hit`, `miss`), refreshed on scrape.
    pub parse_cache: IntCounterVec,
    /// Approval events (`requested`, `approved`, `rejected`, `executed`, `timed_out`,
    /// `canceled`, `auto_approved`, `auto_rejected`, `reused`, `store_error`).
    pub approvals: IntCounterVec,
    /// Webhook deliveries (`delivered`, `retried`, `failed`).
    pub webhooks: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("portcullis".into()), None).expect("static prefix is valid");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_US.to_vec()),
            )
            .expect("static metric definition");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric name");
            h
        };
        let connections_active =
            IntGauge::new("connections_active", "Client connections open now").expect("static");
        registry
            .register(Box::new(connections_active.clone()))
            .expect("unique metric name");
        Metrics {
            connections_total: counter("connections_total", "Client connections accepted"),
            connections_active,
            connections_refused: counter_vec(
                "connections_refused_total",
                "Client connections refused",
                "reason",
            ),
            auth_failures: counter("auth_failures_total", "Failed client logins"),
            statements: counter_vec("statements_total", "Statements decided", "decision"),
            bytes: counter_vec("bytes_total", "Bytes relayed", "direction"),
            errors: counter_vec("errors_total", "Errors by kind", "kind"),
            query_latency_us: histogram(
                "query_latency_microseconds",
                "Time from forwarding a Query or Sync to ReadyForQuery",
            ),
            decision_latency_us: histogram(
                "decision_latency_microseconds",
                "Time spent analysing and deciding one message",
            ),
            parse_cache: counter_vec("parse_cache_total", "Parse cache lookups", "result"),
            approvals: counter_vec("approvals_total", "Approval events", "event"),
            webhooks: counter_vec("webhooks_total", "Webhook deliveries", "outcome"),
            registry,
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
