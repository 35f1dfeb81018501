//! Run ids: `YYYYMMDDTHHMMSSmmmZ-<6 hex>`, sortable by start time.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The name of one stage run. Ids sort by the time the run started; the random
/// suffix keeps two runs started in the same millisecond apart.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `started`.
    pub fn new(started: DateTime<Utc>) -> Self {
        let suffix: u32 = rand::rng().random_range(0..0x100_0000u32);
        Self(format!(
            "{}-{suffix:06x}",
            started.format("%Y%m%dT%H%M%S%3fZ")
        ))
    }

    /// A new id for a run starting now.
    pub fn now() -> Self {
        Self::new(Utc::now())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The time encoded in the id, if it is well formed.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        let stamp = self.0.get(..19)?;
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
            .ok()
            .map(|naive| naive.and_utc())
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn run_ids_sort_by_start_time_and_round_trip_it() {
        let early = Utc.with_ymd_and_hms(2024, 2, 23, 9, 59, 59).unwrap();
        let late = early + chrono::Duration::milliseconds(1);
        let a = RunId::new(early);
        let b = RunId::new(late);
        assert!(a < b, "{a} should sort before {b}");
        assert_eq!(a.as_str().len(), "20240223T095959000Z-abcdef".len());
        assert_eq!(a.started_at(), Some(early));
        assert_eq!(b.started_at(), Some(late));
    }

    #[test]
    fn ids_started_in_the_same_millisecond_differ() {
        let t = Utc::now();
        let ids: std::collections::HashSet<_> = (0..50).map(|_| RunId::new(t)).collect();
        assert!(ids.len() > 45, "random suffixes collide too often");
    }
}
