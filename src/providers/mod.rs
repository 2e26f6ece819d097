//! Providers. Each module owns its verification AND its normalization. Handlers hand a provider an
//! [`Inbound`] (headers + raw bytes); only the provider's verifier can turn it into a
//! [`Verified`], and only a `Verified` request can be normalized and stored.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::{Event, EventType, NewEvent, Source, Subject};

pub mod call;
pub mod config;
pub mod exotel;
pub mod params;
pub mod payment;
pub mod razorpay;
pub mod signing;
pub mod stripe;
pub mod twilio;

/// The inbound routes, one per provider endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    TwilioIncoming,
    TwilioStatus,
    ExotelIncoming,
    ExotelStatus,
    Stripe,
    Razorpay,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Self::TwilioIncoming,
        Self::TwilioStatus,
        Self::ExotelIncoming,
        Self::ExotelStatus,
        Self::Stripe,
        Self::Razorpay,
    ];

    /// The provider this route belongs to (also the credentials' key).
    pub fn provider(self) -> &'static str {
        match self {
            Self::TwilioIncoming | Self::TwilioStatus => "twilio",
            Self::ExotelIncoming | Self::ExotelStatus => "exotel",
            Self::Stripe => "stripe",
            Self::Razorpay => "razorpay",
        }
    }

    /// The URL path.
    pub fn path(self) -> &'static str {
        match self {
            Self::TwilioIncoming => "/voice/twilio/incoming",
            Self::TwilioStatus => "/api/twilio/status",
            Self::ExotelIncoming => "/voice/exotel/incoming",
            Self::ExotelStatus => "/api/exotel/status",
            Self::Stripe => "/api/payments/stripe",
            Self::Razorpay => "/api/payments/razorpay",
        }
    }

    /// A short stable name used in logs and the inbound log.
    pub fn name(self) -> &'static str {
        match self {
            Self::TwilioIncoming => "twilio_incoming",
            Self::TwilioStatus => "twilio_status",
            Self::ExotelIncoming => "exotel_incoming",
            Self::ExotelStatus => "exotel_status",
            Self::Stripe => "stripe",
            Self::Razorpay => "razorpay",
        }
    }
}

/// The known provider names.
pub const PROVIDERS: [&str; 4] = ["twilio", "exotel", "stripe", "razorpay"];

/// An inbound request as received, not yet verified.
#[derive(Debug)]
pub struct Inbound {
    pub route: Route,
    pub tenant_id: String,
    pub method: Method,
    /// The path as received (percent-encoding kept).
    pub path: String,
    /// The raw query string, byte for byte.
    pub raw_query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client address (the proxy's `X-Forwarded-For` client when the peer is trusted).
    pub client_ip: IpAddr,
    /// The public base URL the provider called (`scheme://host[:port]`, no trailing slash).
    pub public_base: String,
    pub received_at: DateTime<Utc>,
}

/// A request whose signature or token has been checked. Constructed only by verifiers.
#[derive(Debug)]
pub struct Verified {
    inner: Inbound,
}

impl Verified {
    /// Only provider verifiers call this, after checking the request.
    pub(crate) fn new(inner: Inbound) -> Self {
        Self { inner }
    }
    pub fn request(&self) -> &Inbound {
        &self.inner
    }
}

/// Why a request was refused (401); `reason` is the stable code recorded in the inbound log.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The outcome of normalizing a verified request.
#[derive(Debug)]
pub struct Normalized {
    /// Unique per (tenant, provider) for this callback.
    pub dedup_key: String,
    /// `None` when the callback maps to no normalized event.
    pub event: Option<NewEvent>,
}

impl Normalized {
    /// A verified callback that maps to no normalized event: acknowledged, logged, not emitted.
    pub fn ignored(dedup_key: String) -> Self {
        Self {
            dedup_key,
            event: None,
        }
    }
}

/// Builds the event envelope shared by every provider.
pub struct EventDraft<'a> {
    pub req: &'a Inbound,
    pub event_type: EventType,
    pub subject: Subject,
    pub occurred_at: Option<DateTime<Utc>>,
    pub provider_event_id: String,
    pub data: Value,
}

impl EventDraft<'_> {
    /// The event, deduplicated on its `provider_event_id`.
    pub fn normalized(self) -> Normalized {
        Normalized {
            dedup_key: self.provider_event_id.clone(),
            event: Some(self.build()),
        }
    }

    pub fn build(self) -> NewEvent {
        let received = crate::event::rfc3339(self.req.received_at);
        NewEvent {
            event: Event {
                id: crate::event::new_event_id(),
                event_type: self.event_type.as_str().to_owned(),
                timestamp: self
                    .occurred_at
                    .map(crate::event::rfc3339)
                    .unwrap_or_else(|| received.clone()),
                tenant_id: self.req.tenant_id.clone(),
                data: self.data,
                source: Source {
                    provider: self.req.route.provider().to_owned(),
                    provider_event_id: Some(self.provider_event_id),
                    received_at: received,
                },
            },
            event_type: self.event_type,
            subject: Some(self.subject),
        }
    }
}

/// Maps a provider call status to a normalized call event (Twilio and Exotel share the words).
pub fn call_event_for_status(status: &str) -> Option<EventType> {
    match status
        .trim()
        .to_ascii_lowercase()
        .replace('_', "-")
        .as_str()
    {
        "ringing" => Some(EventType::CallRinging),
        "in-progress" | "answered" => Some(EventType::CallAnswered),
        "completed" => Some(EventType::CallCompleted),
        "busy" | "no-answer" | "failed" | "canceled" | "cancelled" => Some(EventType::CallFailed),
        _ => None,
    }
}
