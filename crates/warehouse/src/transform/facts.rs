//! Facts: one row per source row version, column-wise.
//!
//! Timestamps split into date and time (milliseconds kept), text dates are
//! parsed, `staff_id` becomes `sales_staff_id`, account numbers are dropped.
//! A row whose text date is not a date, whose reference is unknown, or whose
//! required value is NULL is quarantined with its reason; the rest go on.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use arrow_array::{Array, ArrayRef, BooleanArray, Date32Array, Int32Array, RecordBatch};
use arrow_select::filter::filter;
use chrono::NaiveDate;

use super::{
    columns::{any, ints, strings, timestamps},
    quarantine::Quarantined,
    reference::KnownKeys,
    versions::Version,
};
use crate::{Result, WarehouseTable, calendar::to_date32};

const DAY_MS: i64 = 86_400_000;

/// Where an output column comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// A raw column as it is.
    Column(&'static str),
    /// The date part of a raw timestamp.
    DateOf(&'static str),
    /// The time-of-day part of a raw timestamp.
    TimeOf(&'static str),
    /// A raw `YYYY-MM-DD` text parsed as a date.
    ParseDate(&'static str),
}

use Source::{Column, DateOf, ParseDate, TimeOf};

/// How one fact table is made from one source table.
#[derive(Debug)]
struct FactSpec {
    source: &'static str,
    fact: &'static str,
    columns: &'static [Source],
}

static FACT_SPECS: [FactSpec; 3] = [
    FactSpec {
        source: "sales_order",
        fact: "fact_sales_order",
        columns: &[
            Column("sales_order_id"),
            DateOf("created_at"),
            TimeOf("created_at"),
            DateOf("last_updated"),
            TimeOf("last_updated"),
            Column("staff_id"),
            Column("counterparty_id"),
            Column("units_sold"),
            Column("unit_price"),
            Column("currency_id"),
            Column("design_id"),
            ParseDate("agreed_payment_date"),
            ParseDate("agreed_delivery_date"),
            Column("agreed_delivery_location_id"),
        ],
    },
    FactSpec {
        source: "purchase_order",
        fact: "fact_purchase_order",
        columns: &[
            Column("purchase_order_id"),
            DateOf("created_at"),
            TimeOf("created_at"),
            DateOf("last_updated"),
            TimeOf("last_updated"),
            Column("staff_id"),
            Column("counterparty_id"),
            Column("item_code"),
            Column("item_quantity"),
            Column("item_unit_price"),
            Column("currency_id"),
            ParseDate("agreed_delivery_date"),
            ParseDate("agreed_payment_date"),
            Column("agreed_delivery_location_id"),
        ],
    },
    FactSpec {
        source: "payment",
        fact: "fact_payment",
        columns: &[
            Column("payment_id"),
            DateOf("created_at"),
            TimeOf("created_at"),
            DateOf("last_updated"),
            TimeOf("last_updated"),
            Column("transaction_id"),
            Column("counterparty_id"),
            Column("payment_amount"),
            Column("currency_id"),
            Column("payment_type_id"),
            Column("paid"),
            ParseDate("payment_date"),
        ],
    },
];

/// The source tables facts are made from.
pub const FACT_SOURCES: [&str; 3] = ["sales_order", "purchase_order", "payment"];

/// Turns raw batches of one source table into fact batches.
pub struct FactTransformer<'a> {
    spec: &'static FactSpec,
    table: &'static WarehouseTable,
    keys: &'a KnownKeys,
    dates: DaySet,
    /// `(id, last_updated ms)` not to emit again: the versions the processed
    /// lake already has, and those emitted so far, when the input may repeat
    /// a version (several raw manifests, a backfill, a rebuild).
    seen: Option<HashSet<Version>>,
    /// The smallest and largest `last_updated` emitted.
    emitted: Option<(i64, i64)>,
    /// The largest id emitted.
    emitted_max_id: Option<i32>,
    /// Rows dropped as versions already emitted.
    repeats: u64,
}

/// One raw batch, transformed.
#[derive(Debug)]
pub struct FactBatch {
    /// The rows that became facts.
    pub facts: RecordBatch,
    /// The rows that did not, with reasons.
    pub quarantine: Vec<Quarantined>,
}

impl<'a> FactTransformer<'a> {
    /// The transformer for source table `source`, or `None` if no fact comes from it.
    pub fn for_source(source: &str, keys: &'a KnownKeys) -> Option<Self> {
        let spec = FACT_SPECS.iter().find(|s| s.source == source)?;
        Some(Self {
            spec,
            table: WarehouseTable::by_name(spec.fact)?,
            keys,
            dates: DaySet::default(),
            seen: None,
            emitted: None,
            emitted_max_id: None,
            repeats: 0,
        })
    }

    /// The raw columns a fact of `source` is made from (`None`: no fact is).
    pub fn source_columns(source: &str) -> Option<Vec<&'static str>> {
        let spec = FACT_SPECS.iter().find(|s| s.source == source)?;
        let mut names: Vec<&'static str> = Vec::new();
        for column in spec.columns {
            let (Column(name) | DateOf(name) | TimeOf(name) | ParseDate(name)) = *column;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Some(names)
    }

    /// Emit each (id, last_updated) version once across every batch given,
    /// and none of `already` (versions emitted by earlier runs).
    pub fn once_per_version(mut self, already: HashSet<Version>) -> Self {
        self.seen = Some(already);
        self
    }

    /// Rows dropped so far because their version was already emitted.
    pub fn repeats(&self) -> u64 {
        self.repeats
    }

    /// The smallest and largest `last_updated` (ms) of the facts emitted so far.
    pub fn emitted_range(&self) -> Option<(i64, i64)> {
        self.emitted
    }

    /// The largest id of the facts emitted so far.
    pub fn emitted_max_id(&self) -> Option<i32> {
        self.emitted_max_id
    }

    /// The fact table this writes.
    pub fn table(&self) -> &'static WarehouseTable {
        self.table
    }

    /// Every date the accepted facts refer to, for `dim_date`.
    pub fn into_dates(self) -> BTreeSet<i32> {
        self.dates.days()
    }

    /// Transforms one raw batch.
    pub fn transform(&mut self, raw: &RecordBatch) -> Result<FactBatch> {
        let rows = raw.num_rows();
        let mut reasons: Vec<Option<String>> = vec![None; rows];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.spec.columns.len());
        for (source, target) in self.spec.columns.iter().zip(self.table.columns) {
            let array = build(*source, raw, &mut reasons)?;
            if !target.nullable && array.null_count() > 0 {
                for (row, reason) in reasons.iter_mut().enumerate() {
                    if array.is_null(row) && reason.is_none() {
                        *reason = Some(format!("{} is NULL", target.name));
                    }
                }
            }
            if let Some(dimension) = target.references.filter(|d| *d != "dim_date")
                && let Some(ids) = array.as_any().downcast_ref::<Int32Array>()
            {
                let known = self.keys.lookup(dimension);
                for (row, reason) in reasons.iter_mut().enumerate() {
                    if reason.is_none() && !ids.is_null(row) && !known(ids.value(row)) {
                        *reason = Some(format!(
                            "{} {} is not in {dimension}",
                            target.name,
                            ids.value(row)
                        ));
                    }
                }
            }
            columns.push(array);
        }
        let mut keep: Vec<bool> = reasons.iter().map(Option::is_none).collect();
        let lus = timestamps(raw, "last_updated")?;
        if let Some(seen) = self.seen.as_mut() {
            let ids = ints(raw, self.table.key)?;
            for (row, keep) in keep.iter_mut().enumerate() {
                if *keep && !ids.is_null(row) && !seen.insert((ids.value(row), lus.value(row))) {
                    *keep = false;
                    self.repeats += 1;
                }
            }
        }
        let ids = ints(raw, self.table.key)?;
        for (row, kept) in keep.iter().enumerate() {
            if *kept && !ids.is_null(row) {
                let id = ids.value(row);
                self.emitted_max_id = Some(self.emitted_max_id.map_or(id, |m| m.max(id)));
            }
            if *kept && !lus.is_null(row) {
                let ms = lus.value(row);
                self.emitted = Some(
                    self.emitted
                        .map_or((ms, ms), |(lo, hi)| (lo.min(ms), hi.max(ms))),
                );
            }
        }
        let dropped = keep.iter().any(|k| !k);
        let keep = BooleanArray::from(keep);
        let quarantine = reasons
            .into_iter()
            .enumerate()
            .filter_map(|(row, reason)| Some(Quarantined::new(self.spec.source, raw, row, reason?)))
            .collect::<Vec<_>>();
        if dropped {
            columns = columns
                .iter()
                .map(|c| filter(c.as_ref(), &keep))
                .collect::<Result<_, _>>()?;
        }
        let facts = RecordBatch::try_new(self.table.arrow_schema(), columns)?;
        for (column, target) in facts.columns().iter().zip(self.table.columns) {
            if target.references == Some("dim_date")
                && let Some(days) = column.as_any().downcast_ref::<Date32Array>()
            {
                self.dates.extend(days);
            }
        }
        Ok(FactBatch { facts, quarantine })
    }
}

fn build(source: Source, raw: &RecordBatch, reasons: &mut [Option<String>]) -> Result<ArrayRef> {
    Ok(match source {
        Column(name) => any(raw, name)?,
        DateOf(name) => Arc::new(
            timestamps(raw, name)?
                .unary::<_, arrow_array::types::Date32Type>(|ms| ms.div_euclid(DAY_MS) as i32),
        ),
        TimeOf(name) => Arc::new(
            timestamps(raw, name)?
                .unary::<_, arrow_array::types::Int64Type>(|ms| ms.rem_euclid(DAY_MS) * 1_000),
        ) as ArrayRef,
        ParseDate(name) => {
            let texts = strings(raw, name)?;
            let days: Date32Array = (0..texts.len())
                .map(|row| {
                    if texts.is_null(row) {
                        return None;
                    }
                    let text = texts.value(row);
                    match parse_date(text) {
                        Some(days) => Some(days),
                        None => {
                            if reasons[row].is_none() {
                                reasons[row] =
                                    Some(format!("{name} {text:?} is not a date (YYYY-MM-DD)"));
                            }
                            None
                        }
                    }
                })
                .collect();
            Arc::new(days)
        }
    })
}

/// A `YYYY-MM-DD` text (surrounding blanks allowed) as Date32 days; `None`
/// when it is not a date. The canonical ten-byte form is read directly;
/// anything else goes through chrono's parser, which decides the same way.
fn parse_date(text: &str) -> Option<i32> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10))
    {
        return NaiveDate::from_ymd_opt(y as i32, m, d).map(to_date32);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(to_date32)
}

/// The distinct days a run's facts use: a bitmap (order-preserving over
/// `i32`), cheap to add a million values to.
#[derive(Debug, Default)]
struct DaySet(roaring::RoaringBitmap);

impl DaySet {
    fn extend(&mut self, days: &Date32Array) {
        let mut last = None;
        for day in days.iter().flatten() {
            if last != Some(day) {
                self.0.insert(super::reference::key_bits(day));
                last = Some(day);
            }
        }
    }

    fn days(&self) -> BTreeSet<i32> {
        self.0
            .iter()
            .map(|bits| (bits ^ 0x8000_0000) as i32)
            .collect()
    }
}

/// `dim_date` rows for `days` (Date32 values).
pub fn dim_date_batch(days: &BTreeSet<i32>) -> Result<RecordBatch> {
    use crate::calendar::{CalendarDay, from_date32};
    use arrow_array::StringArray;
    use chrono::Datelike;
    let table = WarehouseTable::by_name("dim_date").expect("listed warehouse table");
    let calendar: Vec<CalendarDay> = days
        .iter()
        .map(|d| CalendarDay::of(from_date32(*d)))
        .collect();
    let ints = |f: &dyn Fn(&CalendarDay) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from_iter_values(calendar.iter().map(f)))
    };
    Ok(RecordBatch::try_new(
        table.arrow_schema(),
        vec![
            Arc::new(Date32Array::from_iter_values(days.iter().copied())),
            ints(&|d| d.date.year()),
            ints(&|d| d.date.month() as i32),
            ints(&|d| d.date.day() as i32),
            ints(&|d| d.day_of_week),
            Arc::new(StringArray::from_iter_values(
                calendar.iter().map(|d| d.day_name),
            )),
            Arc::new(StringArray::from_iter_values(
                calendar.iter().map(|d| d.month_name),
            )),
            ints(&|d| d.quarter),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_chrono_decides_fast_path_or_not() {
        let texts = [
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-12-31",
            " 2024-01-05 ",
            "0000-01-01",
            "2024-1-5",
            "2024-01-5",
            "+2024-01-05",
            "20240105",
            "2024/01/05",
            "2024-01-0x",
            "",
            "１２３４-01-01",
            "9999-12-31",
        ];
        for text in texts {
            let chrono = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .map(to_date32);
            assert_eq!(parse_date(text), chrono, "{text:?}");
        }
        assert_eq!(parse_date("1970-01-02"), Some(1));
    }

    #[test]
    fn the_day_set_keeps_each_day_once_in_order_negative_days_included() {
        let mut days = DaySet::default();
        days.extend(&Date32Array::from(vec![
            Some(5),
            Some(5),
            None,
            Some(-3),
            Some(5),
        ]));
        days.extend(&Date32Array::from(vec![Some(0), Some(-3)]));
        assert_eq!(days.days().into_iter().collect::<Vec<_>>(), vec![-3, 0, 5]);
    }
}
