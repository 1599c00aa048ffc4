//! When a credential is checked next, after a check's outcome.

use super::CheckResult;
use crate::domain::{CredentialStatus, Timestamp};

/// Checks of a valid credential are at most this far apart.
pub const MAX_CHECK_INTERVAL_HOURS: i64 = 24;
/// A valid credential is checked this long before its access token expires.
pub const REFRESH_MARGIN_MINUTES: i64 = 5;
/// After a provider failure the next check waits 1, 2, 4, … minutes, at most an hour.
pub const BACKOFF_BASE_SECS: i64 = 60;
pub const BACKOFF_MAX_SECS: i64 = 3600;
/// After an `UNAUTHENTICATED` verdict the credential is checked again this many hours later,
/// one wait per verdict in a row (1 h, 6 h, a day, then daily for a week), then left alone
/// until it is replaced or a check is asked for. A verdict reached because an answer was lost
/// (a refresh token rotated by a call whose reply never arrived) can so recover; a revoked
/// credential costs the provider ten calls in eight days.
pub const UNAUTHENTICATED_RECHECK_HOURS: &[i64] = &[1, 6, 24, 24, 24, 24, 24, 24, 24, 24];

/// When to check again after `result`, given the credential's status before it and how many
/// checks in a row found that status (not `OK`); returns the new count.
pub fn next_check(
    result: &CheckResult,
    previous: CredentialStatus,
    in_a_row: u32,
    now: Timestamp,
) -> (Option<Timestamp>, u32) {
    use chrono::Duration;
    let daily = now.plus(Duration::hours(MAX_CHECK_INTERVAL_HOURS));
    // A streak counts checks that found the same status.
    let failures = if result.status == previous {
        in_a_row
    } else {
        0
    };
    match result.status {
        CredentialStatus::Ok => {
            let before_expiry = result
                .tokens
                .as_ref()
                .and_then(|t| t.expires_at)
                .map(|at| at.minus(Duration::minutes(REFRESH_MARGIN_MINUTES)))
                .unwrap_or(daily);
            let next = before_expiry.min(daily).max(now.plus(Duration::minutes(1)));
            (Some(next), 0)
        }
        CredentialStatus::TemporarilyUnavailable => {
            let wait = BACKOFF_BASE_SECS
                .saturating_mul(1 << failures.min(16))
                .min(BACKOFF_MAX_SECS);
            (Some(now.plus(Duration::seconds(wait))), failures + 1)
        }
        // Permissions may be granted later: look again daily.
        CredentialStatus::MissingPermission => (Some(daily), 0),
        // Not hammered: a slow series of re-checks, then only a replacement or a requested
        // check brings it back.
        CredentialStatus::Unauthenticated => {
            match UNAUTHENTICATED_RECHECK_HOURS.get(failures as usize) {
                Some(hours) => (Some(now.plus(Duration::hours(*hours))), failures + 1),
                None => (None, failures),
            }
        }
    }
}
