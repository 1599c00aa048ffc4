//! Leaf's timestamps (`yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'`, UTC, microseconds) and the clock.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Mutex;

/// A UTC instant with microsecond precision, written as Leaf writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-22T14:03:07.123456Z")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(6))
    }

    pub fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| Self::from_datetime(at.with_timezone(&Utc)))
    }

    /// `self + duration`, at the latest the last instant chrono represents (never a panic).
    pub fn plus(self, duration: chrono::Duration) -> Self {
        Self::from_datetime(
            self.0
                .checked_add_signed(duration)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// `self - duration`, at the earliest the first instant chrono represents.
    pub fn minus(self, duration: chrono::Duration) -> Self {
        Self::from_datetime(
            self.0
                .checked_sub_signed(duration)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `yyyy-MM-ddTHH:mm:ss.SSSSSSZ`, without parsing a format string on every call.
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Micros, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a timestamp: {text}")))
    }
}

/// Where "now" comes from. Tests substitute a clock they move by hand.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(Utc::now())
    }
}

/// A clock that stands still until it is told to move.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.plus(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_beyond_the_calendar_saturates_instead_of_panicking() {
        let at = Timestamp::parse("2026-11-22T14:03:07Z").unwrap();
        assert_eq!(
            at.plus(chrono::Duration::MAX).datetime(),
            DateTime::<Utc>::MAX_UTC.trunc_subsecs(6)
        );
        assert_eq!(
            at.minus(chrono::Duration::MAX).datetime(),
            DateTime::<Utc>::MIN_UTC
        );
    }

    #[test]
    fn timestamps_are_written_with_microseconds_and_a_z() {
        let at = Timestamp::parse("2026-11-22T14:03:07.123456789+00:00").unwrap();
        assert_eq!(at.to_string(), "2026-11-22T14:03:07.123456Z");
        assert_eq!(
            Timestamp::parse("2026-11-22T14:03:07Z")
                .unwrap()
                .to_string(),
            "2026-11-22T14:03:07.000000Z"
        );
    }
}
