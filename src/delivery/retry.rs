//! The retry policy as a small pure type: how an attempt's outcome is classified and when the
//! next attempt is due. Time is passed in, never read here.

use std::time::{Duration, SystemTime};

/// Longest wait honoured from a `Retry-After` header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What one attempt produced.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// The receiver answered with this status (and maybe a `Retry-After`).
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No response: timeout, connection refused, TLS or DNS failure, refused address.
    NoResponse,
}

/// What to do with the delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    Succeeded,
    /// 410 Gone: fail the delivery and disable the subscription.
    Gone,
    /// Failed for good (a 4xx other than 408/429, or the schedule is spent).
    Failed,
    /// Try again after this long.
    RetryAfter(Duration),
}

/// The retry schedule of `HOOKGATE_RETRY_SCHEDULE`.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub schedule: Vec<Duration>,
}

impl RetryPolicy {
    pub fn new(schedule: Vec<Duration>) -> Self {
        Self { schedule }
    }

    /// Attempts in all: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.len() as u32 + 1
    }

    /// Decides after attempt number `attempt` (1-based).
    pub fn decide(&self, attempt: u32, outcome: &AttemptOutcome) -> Decision {
        let retry_after = match outcome {
            AttemptOutcome::Status { code, .. } if (200..300).contains(code) => {
                return Decision::Succeeded
            }
            AttemptOutcome::Status { code: 410, .. } => return Decision::Gone,
            AttemptOutcome::Status { code, .. }
                if (400..500).contains(code) && *code != 408 && *code != 429 =>
            {
                return Decision::Failed
            }
            AttemptOutcome::Status { retry_after, .. } => *retry_after,
            AttemptOutcome::NoResponse => None,
        };
        let Some(delay) = self.schedule.get(attempt.saturating_sub(1) as usize) else {
            return Decision::Failed;
        };
        let wait = match retry_after {
            Some(ra) if ra > *delay => ra.min(MAX_RETRY_AFTER),
            _ => *delay,
        };
        Decision::RetryAfter(wait)
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(vec![Duration::from_secs(60), Duration::from_secs(300)])
    }
    fn status(code: u16) -> AttemptOutcome {
        AttemptOutcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn two_hundreds_succeed_and_410_is_gone() {
        assert_eq!(policy().decide(1, &status(200)), Decision::Succeeded);
        assert_eq!(policy().decide(1, &status(204)), Decision::Succeeded);
        assert_eq!(policy().decide(1, &status(410)), Decision::Gone);
    }

    #[test]
    fn client_errors_fail_for_good_except_408_and_429() {
        for code in [400, 401, 403, 404, 422] {
            assert_eq!(
                policy().decide(1, &status(code)),
                Decision::Failed,
                "{code}"
            );
        }
        for code in [408, 429, 500, 502, 503, 301, 302] {
            assert_eq!(
                policy().decide(1, &status(code)),
                Decision::RetryAfter(Duration::from_secs(60)),
                "{code}"
            );
        }
        assert_eq!(
            policy().decide(2, &AttemptOutcome::NoResponse),
            Decision::RetryAfter(Duration::from_secs(300))
        );
    }

    #[test]
    fn the_schedule_runs_out() {
        assert_eq!(policy().max_attempts(), 3);
        assert_eq!(policy().decide(3, &status(500)), Decision::Failed);
        assert_eq!(
            policy().decide(3, &AttemptOutcome::NoResponse),
            Decision::Failed
        );
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let longer = AttemptOutcome::Status {
            code: 429,
            retry_after: Some(Duration::from_secs(600)),
        };
        assert_eq!(
            policy().decide(1, &longer),
            Decision::RetryAfter(Duration::from_secs(600))
        );
        let shorter = AttemptOutcome::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            policy().decide(1, &shorter),
            Decision::RetryAfter(Duration::from_secs(60))
        );
        let huge = AttemptOutcome::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(10 * 86400)),
        };
        assert_eq!(
            policy().decide(1, &huge),
            Decision::RetryAfter(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
