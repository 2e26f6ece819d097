//! What Twilio and Exotel share once verified: the one `call.*` event shape (SPEC §4), whose
//! subject is the call, so that a call yields at most one event of each type and a terminal call
//! never goes back.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{EventDraft, Inbound, Normalized};
use crate::event::{EventType, Subject};

/// One normalized call event, before it gets its envelope.
pub struct Call<'a> {
    pub event_type: EventType,
    pub call_id: &'a str,
    /// The provider's `Direction` (`inbound`, `outbound-api`, `incoming`, …).
    pub direction: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    /// The provider's status word; also the failure reason of `call.failed`.
    pub status: &'a str,
    pub duration_seconds: Option<i64>,
    pub recording_url: Option<&'a str>,
    pub sequence: Option<i64>,
    /// Every original parameter.
    pub provider_data: Value,
}

impl Call<'_> {
    /// The event, deduplicated on `dedup_key`, its subject the call.
    pub fn normalized(
        self,
        req: &Inbound,
        dedup_key: String,
        occurred_at: Option<DateTime<Utc>>,
    ) -> Normalized {
        let provider = req.route.provider();
        let direction = match self.direction {
            Some(d) if d.starts_with("outbound") => "outbound",
            _ => "inbound",
        };
        let data = json!({
            "call_id": self.call_id,
            "provider": provider,
            "direction": direction,
            "from": self.from,
            "to": self.to,
            "status": self.status,
            "duration_seconds": self.duration_seconds,
            "recording_url": self.recording_url,
            "failure_reason": (self.event_type == EventType::CallFailed).then_some(self.status),
            "sequence": self.sequence,
            "provider_data": self.provider_data,
        });
        EventDraft {
            req,
            event_type: self.event_type,
            subject: Subject {
                kind: "call",
                id: format!("{provider}:{}", self.call_id),
            },
            occurred_at,
            provider_event_id: dedup_key,
            data,
        }
        .normalized()
    }
}
