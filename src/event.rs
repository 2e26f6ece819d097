//! The normalized event: pure data, no I/O. Every provider callback that maps to something
//! becomes one [`NewEvent`]; its JSON is both the outbound webhook body and a feed item.

use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A new, time-ordered event id: `evt_` + ULID (monotonic within this process).
pub fn new_event_id() -> String {
    prefixed_id("evt_")
}

/// `prefix` + a monotonic ULID.
pub fn prefixed_id(prefix: &str) -> String {
    static GEN: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GEN.lock().unwrap_or_else(|p| p.into_inner());
    let gen = guard.get_or_insert_with(ulid::Generator::new);
    let id = gen.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}{id}")
}

/// When an id made by [`prefixed_id`] was made (unix ms), read back from its ULID.
pub fn id_time_ms(id: &str) -> Option<i64> {
    let ulid = id.rsplit('_').next()?;
    ulid::Ulid::from_string(ulid)
        .ok()
        .map(|u| u.timestamp_ms() as i64)
}

/// RFC 3339 with second precision and `Z`, the one time format of the API.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 with milliseconds, for records where order within a second matters.
pub fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The normalized event types hookgate emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "call.started")]
    CallStarted,
    #[serde(rename = "call.ringing")]
    CallRinging,
    #[serde(rename = "call.answered")]
    CallAnswered,
    #[serde(rename = "call.completed")]
    CallCompleted,
    #[serde(rename = "call.failed")]
    CallFailed,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.completed")]
    PaymentCompleted,
    #[serde(rename = "payment.refunded")]
    PaymentRefunded,
    #[serde(rename = "subscription.disabled")]
    SubscriptionDisabled,
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        Self::CallStarted,
        Self::CallRinging,
        Self::CallAnswered,
        Self::CallCompleted,
        Self::CallFailed,
        Self::PaymentFailed,
        Self::PaymentCompleted,
        Self::PaymentRefunded,
        Self::SubscriptionDisabled,
        Self::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call.started",
            Self::CallRinging => "call.ringing",
            Self::CallAnswered => "call.answered",
            Self::CallCompleted => "call.completed",
            Self::CallFailed => "call.failed",
            Self::PaymentFailed => "payment.failed",
            Self::PaymentCompleted => "payment.completed",
            Self::PaymentRefunded => "payment.refunded",
            Self::SubscriptionDisabled => "subscription.disabled",
            Self::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Progress rank within the life of a call or payment. An event is emitted only when its
    /// rank is higher than every rank already emitted for the same subject: this gives both
    /// "at most one event of each type" and "a terminal state never goes back".
    pub fn rank(self) -> i64 {
        match self {
            Self::CallStarted => 1,
            Self::CallRinging => 2,
            Self::CallAnswered => 3,
            // Terminal: completed and failed share the top rank, so only the first is emitted.
            Self::CallCompleted | Self::CallFailed => 4,
            // Razorpay may report a failed attempt and later capture the same payment: both are
            // real, so failed ranks below completed; a failure after completion is not emitted.
            Self::PaymentFailed => 1,
            Self::PaymentCompleted => 2,
            Self::PaymentRefunded => 3,
            Self::SubscriptionDisabled | Self::WebhookTest => 0,
        }
    }
}

/// Does a subscription filter (`*`, `prefix.*` or an exact type) match `event_type`?
pub fn filter_matches(filter: &str, event_type: &str) -> bool {
    if filter == "*" {
        return true;
    }
    match filter.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => filter == event_type,
    }
}

/// Is `filter` a valid subscription filter?
pub fn valid_filter(filter: &str) -> bool {
    if filter == "*" {
        return true;
    }
    let base = filter.strip_suffix(".*").unwrap_or(filter);
    !base.is_empty()
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
        && !base.starts_with('.')
        && !base.ends_with('.')
}

/// Where an event came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub provider: String,
    pub provider_event_id: Option<String>,
    pub received_at: String,
}

/// The normalized event as published (webhook body and feed item).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: String,
    pub tenant_id: String,
    pub data: Value,
    pub source: Source,
}

/// The subject whose life an event belongs to (a call or a payment): the unit of "one event per
/// type", "never goes back", and of delivery ordering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// `call` or `payment`.
    pub kind: &'static str,
    /// Provider + provider id, e.g. `twilio:CA123`.
    pub id: String,
}

impl Subject {
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// An event ready to be stored.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event: Event,
    pub event_type: EventType,
    pub subject: Option<Subject>,
}

impl NewEvent {
    pub fn body(&self) -> String {
        serde_json::to_string(&self.event).expect("events serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_exact_prefix_and_star() {
        assert!(filter_matches("*", "call.completed"));
        assert!(filter_matches("call.*", "call.completed"));
        assert!(!filter_matches("call.*", "callx.completed"));
        assert!(!filter_matches("call.*", "payment.completed"));
        assert!(filter_matches("payment.completed", "payment.completed"));
        assert!(!filter_matches("payment.completed", "payment.failed"));
        assert!(valid_filter("call.*") && valid_filter("*") && valid_filter("payment.completed"));
        assert!(
            !valid_filter("")
                && !valid_filter(".*")
                && !valid_filter("Call.*")
                && !valid_filter("a b")
        );
    }

    #[test]
    fn ids_are_prefixed_and_time_ordered() {
        let a = new_event_id();
        let b = new_event_id();
        assert!(a.starts_with("evt_") && a.len() == 30);
        assert!(a < b);
    }

    #[test]
    fn types_round_trip_through_strings() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
