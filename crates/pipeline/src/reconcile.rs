//! What every reconcile shares: one layer's set of row versions compared
//! with the next layer's, counting what is missing, what is extra (or
//! repeated), with an order-independent checksum of each side.
//!
//! The sources' reconciles ([`crate::totesys::reconcile`],
//! [`crate::markets::reconcile`]) decide what a version is in each layer;
//! [`Comparison`] and [`ReconcileReport`] are what they all return.

use std::{
    collections::{BTreeSet, HashSet},
    hash::Hash,
};

/// One comparison between two layers for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The table (source or warehouse name).
    pub table: &'static str,
    /// Which layers: "source → raw", "raw → processed", …
    pub layers: &'static str,
    /// Versions on the expected side.
    pub expected: u64,
    /// Versions on the actual side.
    pub actual: u64,
    /// Expected versions the actual side lacks.
    pub missing: u64,
    /// Actual versions the expected side lacks (or repeated copies).
    pub extra: u64,
    /// Order-independent checksums of both sides (equal when the sets are).
    pub checksums: (u64, u64),
    /// One missing or extra version, to start looking.
    pub example: Option<String>,
    /// What clears the difference, when the check can tell (`None` when
    /// clean, or when the reconcile gives one piece of advice for all).
    pub advice: Option<String>,
}

impl Comparison {
    /// Whether both sides agree.
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.extra == 0
    }
}

/// All comparisons of one reconcile.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// In table order.
    pub comparisons: Vec<Comparison>,
}

impl ReconcileReport {
    /// Whether every comparison agrees.
    pub fn is_clean(&self) -> bool {
        self.comparisons.iter().all(Comparison::is_clean)
    }
}

/// A row version as a reconcile compares it: equal versions are the same
/// row in the same state.
pub(crate) trait RowVersion: Clone + Eq + Hash + Ord {
    /// The version for people ("id 7 at 2024-01-02 03:04:05.006").
    fn show(&self) -> String;
    /// A 64-bit mix of the version, summed into the checksum.
    fn mix(&self) -> u64;
}

/// A totesys version: (id, last_updated in ms since the epoch).
impl RowVersion for (i32, i64) {
    fn show(&self) -> String {
        let (id, ms) = self;
        let at = chrono::DateTime::from_timestamp_millis(*ms).map_or_else(
            || ms.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        );
        format!("id {id} at {at}")
    }

    fn mix(&self) -> u64 {
        let (id, ms) = self;
        finalize((*id as u64) ^ (*ms as u64).rotate_left(32))
    }
}

/// The 64-bit finaliser of MurmurHash3: spreads every input bit.
pub(crate) fn finalize(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// FNV-1a over `bytes`, folded into `seed`: a stable hash (the same in
/// every process and release, unlike `std`'s) for text in a version.
pub(crate) fn fold_bytes(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `expected` against `actual`; with `subset`, extra versions on the actual
/// side are allowed (the raw lake keeps history, the source only the present).
pub(crate) fn compare<V: RowVersion>(
    table: &'static str,
    layers: &'static str,
    expected: &HashSet<V>,
    actual: &[V],
    subset: bool,
) -> Comparison {
    let actual_set: HashSet<&V> = actual.iter().collect();
    let repeated = (actual.len() - actual_set.len()) as u64;
    let missing: BTreeSet<&V> = expected
        .iter()
        .filter(|v| !actual_set.contains(v))
        .collect();
    let extra: BTreeSet<&V> = if subset {
        BTreeSet::new()
    } else {
        actual_set
            .iter()
            .copied()
            .filter(|v| !expected.contains(*v))
            .collect()
    };
    let example = missing
        .iter()
        .next()
        .map(|v| format!("missing {}", v.show()))
        .or_else(|| extra.iter().next().map(|v| format!("extra {}", v.show())))
        .or_else(|| (repeated > 0).then(|| "a version repeated".to_string()));
    Comparison {
        table,
        layers,
        expected: expected.len() as u64,
        actual: actual.len() as u64,
        missing: missing.len() as u64,
        extra: extra.len() as u64 + if subset { 0 } else { repeated },
        checksums: (checksum(expected.iter()), checksum(actual_set.into_iter())),
        example,
        advice: None,
    }
}

/// Sum of a 64-bit mix of each version: equal for equal sets, in any order.
pub(crate) fn checksum<'a, V: RowVersion + 'a>(versions: impl Iterator<Item = &'a V>) -> u64 {
    versions.fold(0u64, |sum, v| sum.wrapping_add(v.mix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totesys_checksum_is_the_one_it_always_was() {
        // The mix of (id, ms) before it moved here, spelled out.
        let old = |id: i32, ms: i64| {
            let mut x = (id as u64) ^ (ms as u64).rotate_left(32);
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            x
        };
        let versions = [(1, 10), (-2, 1_700_000_000_000), (3, -5)];
        let expected = versions
            .iter()
            .fold(0u64, |sum, (id, ms)| sum.wrapping_add(old(*id, *ms)));
        assert_eq!(checksum(versions.iter()), expected);
        assert_eq!((7, 86_400_000).show(), "id 7 at 1970-01-02 00:00:00.000");
    }

    #[test]
    fn stable_text_hashes_differ_by_text() {
        assert_eq!(fold_bytes(0, b"BTC-BRL"), fold_bytes(0, b"BTC-BRL"));
        assert_ne!(fold_bytes(0, b"BTC-BRL"), fold_bytes(0, b"ETH-BRL"));
        assert_ne!(fold_bytes(0, b"BTC-BRL"), fold_bytes(1, b"BTC-BRL"));
    }
}
