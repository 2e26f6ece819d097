//! Prometheus metrics (`GET /metrics`), one registry per running gateway so that several gateways
//! in one process (the test suite) do not mix their figures.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::{Finish, IngestKind, IngestResult};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    provider: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Provider {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    provider: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptOutcome {
    outcome: &'static str,
}

/// Latency buckets in seconds: 1 ms … ~33 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}

fn histogram_family<L: Clone + std::hash::Hash + Eq>() -> Family<L, Histogram, fn() -> Histogram> {
    Family::new_with_constructor(|| Histogram::new(latency_buckets()))
}

/// Every metric the gateway exposes.
pub struct Metrics {
    registry: Registry,
    inbound: Family<Outcome, Counter>,
    responses: Family<Status, Counter>,
    verification_failures: Family<Reason, Counter>,
    duplicates: Family<Provider, Counter>,
    ack_latency: Family<Provider, Histogram, fn() -> Histogram>,
    attempts: Family<AttemptOutcome, Counter>,
    attempt_latency: Histogram,
    delivery_latency: Histogram,
    pending: Gauge,
    disabled: Gauge,
    /// Serializes scrapes (the gauges are set, then the registry encoded).
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hookgate");
        let inbound = Family::<Outcome, Counter>::default();
        registry.register(
            "inbound_requests",
            "Inbound callbacks that reached verification, by provider and outcome (accepted, duplicate, ignored, rejected)",
            inbound.clone(),
        );
        let responses = Family::<Status, Counter>::default();
        registry.register(
            "inbound_responses",
            "Answers sent on the inbound routes, by provider and HTTP status",
            responses.clone(),
        );
        let verification_failures = Family::<Reason, Counter>::default();
        registry.register(
            "verification_failures",
            "Rejected inbound callbacks, by provider and reason code",
            verification_failures.clone(),
        );
        let duplicates = Family::<Provider, Counter>::default();
        registry.register(
            "inbound_duplicates",
            "Verified callbacks dropped as duplicates, by provider",
            duplicates.clone(),
        );
        let ack_latency = histogram_family::<Provider>();
        registry.register(
            "ack_latency_seconds",
            "Time from receiving an inbound callback to answering it (after the commit)",
            ack_latency.clone(),
        );
        let attempts = Family::<AttemptOutcome, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Outbound delivery attempts by outcome (succeeded, retry, failed, gone, dropped)",
            attempts.clone(),
        );
        let attempt_latency = Histogram::new(latency_buckets());
        registry.register(
            "delivery_attempt_latency_seconds",
            "Duration of one outbound delivery attempt",
            attempt_latency.clone(),
        );
        let delivery_latency = Histogram::new(latency_buckets());
        registry.register(
            "delivery_latency_seconds",
            "Time from accepting an event to its successful delivery",
            delivery_latency.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "pending_deliveries",
            "Deliveries waiting to be sent or retried",
            pending.clone(),
        );
        let disabled = Gauge::default();
        registry.register(
            "disabled_subscriptions",
            "Subscriptions that are disabled",
            disabled.clone(),
        );
        Self {
            registry,
            inbound,
            responses,
            verification_failures,
            duplicates,
            ack_latency,
            attempts,
            attempt_latency,
            delivery_latency,
            pending,
            disabled,
            scrape: Mutex::new(()),
        }
    }

    /// One committed inbound item.
    pub fn ingested(&self, provider: &'static str, kind: &IngestKind, result: &IngestResult) {
        let outcome = match (kind, result) {
            (IngestKind::Rejected { reason }, _) => {
                self.verification_failures
                    .get_or_create(&Reason { provider, reason })
                    .inc();
                "rejected"
            }
            (_, IngestResult::Duplicate { .. }) => {
                self.duplicates.get_or_create(&Provider { provider }).inc();
                "duplicate"
            }
            (
                IngestKind::Accepted {
                    ignored_reason: Some(_),
                    ..
                },
                _,
            ) => "ignored",
            _ => "accepted",
        };
        self.inbound
            .get_or_create(&Outcome { provider, outcome })
            .inc();
    }

    /// One answer on an inbound route.
    pub fn answered(&self, provider: &'static str, status: u16, took: Duration) {
        self.responses
            .get_or_create(&Status { provider, status })
            .inc();
        self.ack_latency
            .get_or_create(&Provider { provider })
            .observe(took.as_secs_f64());
    }

    /// One finished delivery attempt; `accepted_ms` is when its event was accepted.
    pub fn attempted(&self, finish: &Finish, latency_ms: i64, at_ms: i64, accepted_ms: i64) {
        let outcome = match finish {
            Finish::Succeeded => "succeeded",
            Finish::Retry { .. } => "retry",
            Finish::Failed => "failed",
            Finish::Gone => "gone",
            Finish::Dropped => "dropped",
        };
        self.attempts
            .get_or_create(&AttemptOutcome { outcome })
            .inc();
        if matches!(finish, Finish::Dropped) {
            return;
        }
        self.attempt_latency.observe(latency_ms.max(0) as f64 / 1e3);
        if matches!(finish, Finish::Succeeded) {
            self.delivery_latency
                .observe((at_ms - accepted_ms).max(0) as f64 / 1e3);
        }
    }

    /// The Prometheus text exposition, with the gauges read from the store just now.
    pub fn render(&self, pending: i64, disabled: i64) -> String {
        let _guard = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.pending.set(pending);
        self.disabled.set(disabled);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
