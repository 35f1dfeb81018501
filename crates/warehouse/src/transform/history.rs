//! Type 2 history of the descriptive dimensions (`dim_<name>_history`).
//!
//! The reference state keeps every distinct version of the seven small
//! source tables, in commit order, each with the time the ingest run that
//! read it started. A dimension's history is a pure function of those
//! versions, so a re-run, a rebuild and a backfill give the same rows:
//!
//! - **When a source version takes effect.** At its `last_updated`. A
//!   version whose `last_updated` an earlier version of the same row already
//!   has (the source changed the row without stamping it) takes effect when
//!   Tributary first read it, since nothing earlier is known.
//! - **Versions of a dimension.** Every time one of its source rows takes a
//!   new version (its own row, or a row joined into it: the legal address of
//!   a counterparty, the department of a staff member) the dimension is
//!   evaluated with the source versions in effect then. A change that leaves
//!   every dimension attribute as it was opens no version.
//! - **A late version** (committed after a newer one) lands in place: it
//!   splits the interval it falls into, and the versions after it are
//!   evaluated again with it.
//! - **The first version** of an entity is taken to be valid since its
//!   source row was created (`created_at`); a joined row is taken, before
//!   its first known version, to have looked like that version.
//! - **Intervals** are `[valid_from, valid_to)`; the current version has
//!   `valid_to` NULL and `is_current` true; `version` numbers an entity's
//!   versions from 1.
//! - **Surrogate keys** (`<entity>_version_id`) hash the dimension, the
//!   entity id and `valid_from`: a rebuild gives the same keys, and a split
//!   keeps the keys of the versions around the new one.
//!
//! Whenever an entity gains a version, its whole history is written again;
//! the loader replaces the entity's rows.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow_select::{concat::concat_batches, take::take};
use tributary_totesys::{TableDef, row_fingerprint};

use super::{
    columns::{any, id_at, ints, strings, timestamps},
    reference::{REFERENCE_TABLES, ReferenceState},
};
use crate::{Result, WarehouseTable, currency::currency_name};

/// The column a kept version carries besides the source's: when the ingest
/// run that read it started (ms since the Unix epoch, UTC).
pub const CAPTURED_AT: &str = "_captured_at";

/// The schema of a reference table's kept versions.
pub fn versions_schema(def: &TableDef) -> SchemaRef {
    let mut fields: Vec<Field> = def
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(
        CAPTURED_AT,
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    ));
    Arc::new(Schema::new(fields))
}

/// Seeds the versions of a state that kept none (written before histories
/// existed): its current rows, each taking effect at its `last_updated`;
/// the next run then writes every entity's history.
pub fn seed_versions(state: &mut ReferenceState) -> Result<()> {
    for name in REFERENCE_TABLES {
        let (Some(def), Some(current)) = (TableDef::by_name(name), state.table(name)) else {
            continue;
        };
        let stamps = timestamps(current, "last_updated")?.clone();
        let mut columns = current.columns().to_vec();
        columns.push(Arc::new(stamps));
        let seeded = RecordBatch::try_new(versions_schema(def), columns)?;
        state.set_versions(def.name, seeded);
    }
    state.set_history_from_all(true);
    Ok(())
}

/// Adds one run's raw rows to the versions kept: each distinct (id,
/// `last_updated`, row) once, in commit order. `raw` holds, per reference
/// table, batches in commit order with the start of the ingest run that
/// read each. Returns per table the ids that gained a version.
pub fn record_versions(
    state: &mut ReferenceState,
    raw: &HashMap<&'static str, Vec<(RecordBatch, i64)>>,
) -> Result<HashMap<&'static str, BTreeSet<i32>>> {
    let mut gained = HashMap::new();
    for name in REFERENCE_TABLES {
        let Some(def) = TableDef::by_name(name) else {
            continue;
        };
        let ids_gained: &mut BTreeSet<i32> = gained.entry(def.name).or_default();
        let Some(batches) = raw.get(name).filter(|b| !b.is_empty()) else {
            continue;
        };
        let schema = versions_schema(def);
        let kept = state
            .versions(name)
            .cloned()
            .unwrap_or_else(|| RecordBatch::new_empty(schema.clone()));
        let source_columns = def.columns.len();
        let mut seen: HashSet<(i32, i64, u64)> = HashSet::new();
        {
            let plain = kept.project(&(0..source_columns).collect::<Vec<_>>())?;
            let ids = ints(&plain, def.primary_key)?;
            let stamps = timestamps(&plain, "last_updated")?;
            for row in 0..plain.num_rows() {
                if let Some(id) = id_at(ids, row) {
                    seen.insert((id, stamps.value(row), row_fingerprint(&plain, row)));
                }
            }
        }
        let mut parts = vec![kept];
        for (batch, captured) in batches {
            let ids = ints(batch, def.primary_key)?;
            let stamps = timestamps(batch, "last_updated")?;
            let mut rows = Vec::new();
            for row in 0..batch.num_rows() {
                let Some(id) = id_at(ids, row) else { continue };
                if stamps.is_null(row) {
                    continue;
                }
                if seen.insert((id, stamps.value(row), row_fingerprint(batch, row))) {
                    rows.push(row as u32);
                    ids_gained.insert(id);
                }
            }
            if rows.is_empty() {
                continue;
            }
            let rows = UInt32Array::from(rows);
            let mut columns = batch
                .columns()
                .iter()
                .map(|c| Ok(take(c.as_ref(), &rows, None)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            columns.push(Arc::new(TimestampMillisecondArray::from(vec![
                *captured;
                rows.len()
            ])));
            parts.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        if parts.len() > 1 {
            state.set_versions(def.name, concat_batches(&schema, &parts)?);
        }
    }
    Ok(gained)
}

/// Where a history column comes from.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// A column of the dimension's own source row.
    Own(&'static str),
    /// A column of the row joined into it.
    Joined(&'static str),
    /// The ISO 4217 name of the own row's `currency_code`.
    CurrencyName,
}

/// How one history is made.
struct Spec {
    table: &'static str,
    own: &'static str,
    /// The foreign key of the own row, the joined table and its key.
    join: Option<(&'static str, &'static str, &'static str)>,
    /// The columns between the version id and `valid_from`, in order.
    columns: &'static [Src],
}

use Src::{CurrencyName, Joined, Own};

const SPECS: [Spec; 6] = [
    Spec {
        table: "dim_staff_history",
        own: "staff",
        join: Some(("department_id", "department", "department_id")),
        columns: &[
            Own("staff_id"),
            Own("first_name"),
            Own("last_name"),
            Joined("department_name"),
            Joined("location"),
            Own("email_address"),
        ],
    },
    Spec {
        table: "dim_location_history",
        own: "address",
        join: None,
        columns: &[
            Own("address_id"),
            Own("address_line_1"),
            Own("address_line_2"),
            Own("district"),
            Own("city"),
            Own("postal_code"),
            Own("country"),
            Own("phone"),
        ],
    },
    Spec {
        table: "dim_currency_history",
        own: "currency",
        join: None,
        columns: &[Own("currency_id"), Own("currency_code"), CurrencyName],
    },
    Spec {
        table: "dim_design_history",
        own: "design",
        join: None,
        columns: &[
            Own("design_id"),
            Own("design_name"),
            Own("file_location"),
            Own("file_name"),
        ],
    },
    Spec {
        table: "dim_counterparty_history",
        own: "counterparty",
        join: Some(("legal_address_id", "address", "address_id")),
        columns: &[
            Own("counterparty_id"),
            Own("counterparty_legal_name"),
            Joined("address_line_1"),
            Joined("address_line_2"),
            Joined("district"),
            Joined("city"),
            Joined("postal_code"),
            Joined("country"),
            Joined("phone"),
        ],
    },
    Spec {
        table: "dim_payment_type_history",
        own: "payment_type",
        join: None,
        columns: &[Own("payment_type_id"), Own("payment_type_name")],
    },
];

/// Per id, the versions of one source table in the order they take effect:
/// (effective time in ms, row of the kept versions). One version per
/// instant: of two taking effect together, the later committed.
type Timeline = HashMap<i32, Vec<(i64, u32)>>;

fn timeline(versions: &RecordBatch, key: &str) -> Result<Timeline> {
    let ids = ints(versions, key)?;
    let stamps = timestamps(versions, "last_updated")?;
    let captured = timestamps(versions, CAPTURED_AT)?;
    let mut stamped: HashMap<i32, HashSet<i64>> = HashMap::new();
    let mut out: Timeline = HashMap::new();
    for row in 0..versions.num_rows() {
        let Some(id) = id_at(ids, row) else { continue };
        let stamp = stamps.value(row);
        let effective = if stamped.entry(id).or_default().insert(stamp) {
            stamp
        } else {
            // Changed without a new last_updated: known from when it was read.
            captured.value(row).max(stamp)
        };
        out.entry(id).or_default().push((effective, row as u32));
    }
    for list in out.values_mut() {
        // Stable: versions taking effect together stay in commit order.
        list.sort_by_key(|(at, _)| *at);
        let mut one_per_instant: Vec<(i64, u32)> = Vec::with_capacity(list.len());
        for version in list.drain(..) {
            match one_per_instant.last_mut() {
                Some(last) if last.0 == version.0 => *last = version,
                _ => one_per_instant.push(version),
            }
        }
        *list = one_per_instant;
    }
    Ok(out)
}

/// The version in effect at `at`: the last taking effect at or before it,
/// else (before the first) the first.
fn in_effect(list: &[(i64, u32)], at: i64) -> Option<u32> {
    let after = list.partition_point(|(from, _)| *from <= at);
    list.get(after.saturating_sub(1)).map(|(_, row)| *row)
}

/// Fingerprints of `columns` of every row: equal attributes, equal prints.
fn fingerprints(batch: &RecordBatch, columns: &[&str]) -> Result<Vec<u64>> {
    let indices = columns
        .iter()
        .map(|name| {
            batch.schema().index_of(name).map_err(|e| {
                arrow_schema::ArrowError::SchemaError(format!("version column: {e}")).into()
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let projected = batch.project(&indices)?;
    Ok((0..projected.num_rows())
        .map(|row| row_fingerprint(&projected, row))
        .collect())
}

/// A stable 63-bit hash (FNV-1a) of a version's identity.
fn version_id(table: &str, id: i32, valid_from: i64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in table
        .as_bytes()
        .iter()
        .chain(&[0])
        .chain(&id.to_le_bytes())
        .chain(&valid_from.to_le_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash & (i64::MAX as u64)) as i64
}

/// The history rows of every entity that gained a version (all of them
/// when the state asks for it), one batch per history table.
pub fn history_changes(
    state: &mut ReferenceState,
    gained: &HashMap<&'static str, BTreeSet<i32>>,
) -> Result<Vec<(&'static WarehouseTable, RecordBatch)>> {
    let all = state.history_from_all();
    let mut out = Vec::new();
    for spec in &SPECS {
        let batch = history_of(state, spec, gained, all)?;
        if batch.num_rows() > 0 {
            let table = WarehouseTable::by_name(spec.table).expect("listed warehouse table");
            out.push((table, batch));
        }
    }
    state.set_history_from_all(false);
    Ok(out)
}

fn versions_of<'a>(state: &'a ReferenceState, name: &str) -> Result<&'a RecordBatch> {
    state.versions(name).ok_or_else(|| {
        arrow_schema::ArrowError::SchemaError(format!("no versions kept for {name}")).into()
    })
}

fn history_of(
    state: &ReferenceState,
    spec: &Spec,
    gained: &HashMap<&'static str, BTreeSet<i32>>,
    all: bool,
) -> Result<RecordBatch> {
    let table = WarehouseTable::by_name(spec.table).expect("listed warehouse table");
    let def = TableDef::by_name(spec.own).expect("reference table");
    let own = versions_of(state, spec.own)?;
    let own_line = timeline(own, def.primary_key)?;
    let own_columns: Vec<&str> = spec
        .columns
        .iter()
        .filter_map(|c| match c {
            Own(name) => Some(*name),
            CurrencyName => Some("currency_code"),
            Joined(_) => None,
        })
        .collect();
    let own_prints = fingerprints(own, &own_columns)?;
    let created = timestamps(own, "created_at")?;
    let joined = match spec.join {
        Some((foreign, name, key)) => {
            let batch = versions_of(state, name)?;
            let columns: Vec<&str> = spec
                .columns
                .iter()
                .filter_map(|c| match c {
                    Joined(name) => Some(*name),
                    _ => None,
                })
                .collect();
            Some((
                ints(own, foreign)?,
                batch,
                timeline(batch, key)?,
                fingerprints(batch, &columns)?,
                name,
            ))
        }
        None => None,
    };
    let codes = match spec.columns.iter().any(|c| matches!(c, CurrencyName)) {
        true => Some(strings(own, "currency_code")?),
        false => None,
    };

    // The entities to write: those with a new version, and those whose
    // joined row (in any of their versions) has one.
    let empty = BTreeSet::new();
    let own_gained = gained.get(spec.own).unwrap_or(&empty);
    let mut entities: BTreeSet<i32> = if all {
        own_line.keys().copied().collect()
    } else {
        own_gained.clone()
    };
    if let Some((foreign, _, _, _, name)) = &joined {
        let joined_gained = gained.get(name).unwrap_or(&empty);
        if !all && !joined_gained.is_empty() {
            for (id, list) in &own_line {
                if list.iter().any(|(_, row)| {
                    id_at(foreign, *row as usize).is_some_and(|fk| joined_gained.contains(&fk))
                }) {
                    entities.insert(*id);
                }
            }
        }
    }

    let (mut own_rows, mut joined_rows, mut from, mut to, mut ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in entities {
        let Some(list) = own_line.get(&id) else {
            continue;
        };
        let first = list[0].0;
        let mut instants: Vec<i64> = list.iter().map(|(at, _)| *at).collect();
        if let Some((foreign, _, line, _, _)) = &joined {
            let partners: BTreeSet<i32> = list
                .iter()
                .filter_map(|(_, row)| id_at(foreign, *row as usize))
                .collect();
            for partner in partners {
                if let Some(partner_line) = line.get(&partner) {
                    instants.extend(
                        partner_line
                            .iter()
                            .map(|(at, _)| *at)
                            .filter(|at| *at > first),
                    );
                }
            }
        }
        instants.sort_unstable();
        instants.dedup();
        let start = own_rows.len();
        let mut last_print: Option<(u64, u64)> = None;
        for at in instants {
            let own_row = in_effect(list, at).expect("an entity has a version");
            let partner = match &joined {
                Some((foreign, _, line, prints, _)) => {
                    let Some(row) = id_at(foreign, own_row as usize)
                        .and_then(|fk| line.get(&fk))
                        .and_then(|l| in_effect(l, at))
                    else {
                        // No such row known: no version (the current
                        // dimension quarantines it too).
                        continue;
                    };
                    Some((row, prints[row as usize]))
                }
                None => None,
            };
            if let Some(codes) = codes {
                let row = own_row as usize;
                if codes.is_null(row) || currency_name(codes.value(row)).is_none() {
                    continue;
                }
            }
            let print = (own_prints[own_row as usize], partner.map_or(0, |p| p.1));
            if last_print == Some(print) {
                continue;
            }
            last_print = Some(print);
            own_rows.push(own_row);
            joined_rows.push(partner.map_or(0, |p| p.0));
            from.push(at);
            ids.push(id);
        }
        if own_rows.len() > start {
            // The first version: valid since the source row was created.
            let earliest_created = list
                .iter()
                .filter(|(_, row)| !created.is_null(*row as usize))
                .map(|(_, row)| created.value(*row as usize))
                .min();
            if let Some(created_at) = earliest_created {
                from[start] = from[start].min(created_at);
            }
            let end = own_rows.len();
            to.extend((start..end).map(|i| (i + 1 < end).then(|| from[i + 1])));
        }
    }

    let own_take = UInt32Array::from(own_rows);
    let joined_take = UInt32Array::from(joined_rows);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    columns.push(Arc::new(Int64Array::from_iter_values(
        ids.iter()
            .zip(&from)
            .map(|(id, at)| version_id(spec.table, *id, *at)),
    )));
    for source in spec.columns {
        columns.push(match source {
            Own(name) => take(any(own, name)?.as_ref(), &own_take, None)?,
            Joined(name) => {
                let (_, batch, _, _, _) = joined.as_ref().expect("a joined history");
                take(any(batch, name)?.as_ref(), &joined_take, None)?
            }
            CurrencyName => {
                let codes = codes.expect("a currency history");
                Arc::new(StringArray::from_iter_values(own_take.values().iter().map(
                    |row| currency_name(codes.value(*row as usize)).unwrap_or_default(),
                )))
            }
        });
    }
    let current: BooleanArray = to.iter().map(|t| Some(t.is_none())).collect();
    let mut number = 0;
    let numbers = Int32Array::from_iter_values(ids.iter().enumerate().map(|(i, id)| {
        number = if i > 0 && ids[i - 1] == *id {
            number + 1
        } else {
            1
        };
        number
    }));
    columns.push(Arc::new(TimestampMillisecondArray::from(from)));
    columns.push(Arc::new(TimestampMillisecondArray::from(to)));
    columns.push(Arc::new(current));
    columns.push(Arc::new(numbers));
    Ok(RecordBatch::try_new(table.arrow_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::StringArray;

    use super::*;

    fn ts(values: &[i64]) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(values.to_vec()))
    }

    fn text(values: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn opt_text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn int(values: &[i32]) -> ArrayRef {
        Arc::new(Int32Array::from(values.to_vec()))
    }

    /// An address row: (id, city, created_at, last_updated).
    fn address(id: i32, city: &str, created: i64, updated: i64) -> RecordBatch {
        let def = TableDef::by_name("address").unwrap();
        RecordBatch::try_new(
            def.arrow_schema(),
            vec![
                int(&[id]),
                text(&["1 High St"]),
                opt_text(&[None]),
                opt_text(&[None]),
                text(&[city]),
                text(&["LS1"]),
                text(&["UK"]),
                text(&["0113"]),
                ts(&[created]),
                ts(&[updated]),
            ],
        )
        .unwrap()
    }

    /// A counterparty row: (id, legal name, legal address, contact, created_at, last_updated).
    fn counterparty(
        id: i32,
        name: &str,
        legal_address: i32,
        contact: &str,
        created: i64,
        updated: i64,
    ) -> RecordBatch {
        let def = TableDef::by_name("counterparty").unwrap();
        RecordBatch::try_new(
            def.arrow_schema(),
            vec![
                int(&[id]),
                text(&[name]),
                int(&[legal_address]),
                opt_text(&[Some(contact)]),
                opt_text(&[None]),
                ts(&[created]),
                ts(&[updated]),
            ],
        )
        .unwrap()
    }

    fn design(id: i32, name: &str, created: i64, updated: i64) -> RecordBatch {
        let def = TableDef::by_name("design").unwrap();
        RecordBatch::try_new(
            def.arrow_schema(),
            vec![
                int(&[id]),
                ts(&[created]),
                text(&[name]),
                text(&["/designs"]),
                text(&["d.json"]),
                ts(&[updated]),
            ],
        )
        .unwrap()
    }

    type Run = Vec<(&'static str, RecordBatch)>;

    /// Applies one ingest run read at `at`; returns the histories written.
    fn apply(
        state: &mut ReferenceState,
        run: &Run,
        at: i64,
    ) -> HashMap<&'static str, Vec<Version>> {
        let mut raw: HashMap<&'static str, Vec<(RecordBatch, i64)>> = HashMap::new();
        for (table, batch) in run {
            raw.entry(table).or_default().push((batch.clone(), at));
        }
        let plain: HashMap<&'static str, Vec<RecordBatch>> = raw
            .iter()
            .map(|(t, v)| (*t, v.iter().map(|(b, _)| b.clone()).collect()))
            .collect();
        super::super::reference::apply_reference_changes(state, &plain).unwrap();
        let gained = record_versions(state, &raw).unwrap();
        history_changes(state, &gained)
            .unwrap()
            .into_iter()
            .map(|(table, batch)| (table.name, versions(&batch)))
            .collect()
    }

    /// (version id, entity id, a describing text column, valid_from, valid_to, is_current).
    type Version = (i64, i32, String, i64, Option<i64>, bool);

    fn versions(batch: &RecordBatch) -> Vec<Version> {
        let n = batch.num_columns();
        let col = |i: usize| batch.column(i).clone();
        let version_ids = col(0);
        let version_ids = version_ids.as_any().downcast_ref::<Int64Array>().unwrap();
        let ids = col(1);
        let ids = ids.as_any().downcast_ref::<Int32Array>().unwrap();
        // The legal name, the city or the design name: the column that changes.
        let describing = match batch.schema().field(2).name().as_str() {
            "address_line_1" => 5,
            _ => 2,
        };
        let describing = batch.column(describing).clone();
        let describing = describing.as_any().downcast_ref::<StringArray>().unwrap();
        let city = batch
            .schema()
            .index_of("counterparty_legal_city")
            .ok()
            .map(|i| batch.column(i).clone());
        let from = col(n - 4);
        let from = from
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let to = col(n - 3);
        let to = to
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let current = col(n - 2);
        let current = current.as_any().downcast_ref::<BooleanArray>().unwrap();
        (0..batch.num_rows())
            .map(|row| {
                let mut label = describing.value(row).to_string();
                if let Some(city) = &city {
                    let city = city.as_any().downcast_ref::<StringArray>().unwrap();
                    label = format!("{label}@{}", city.value(row));
                }
                (
                    version_ids.value(row),
                    ids.value(row),
                    label,
                    from.value(row),
                    (!to.is_null(row)).then(|| to.value(row)),
                    current.value(row),
                )
            })
            .collect()
    }

    fn spans(versions: &[Version]) -> Vec<(i32, &str, i64, Option<i64>, bool)> {
        versions
            .iter()
            .map(|v| (v.1, v.2.as_str(), v.3, v.4, v.5))
            .collect()
    }

    fn runs() -> Vec<(Run, i64)> {
        vec![
            (
                vec![
                    ("address", address(1, "Leeds", 0, 10)),
                    ("counterparty", counterparty(7, "Acme", 1, "Ann", 5, 20)),
                    ("design", design(3, "Wave", 2, 30)),
                ],
                100,
            ),
            // The address moves: a new counterparty version through the join;
            // the design changes without a new last_updated.
            (
                vec![
                    ("address", address(1, "York", 0, 150)),
                    ("design", design(3, "Wave II", 2, 30)),
                ],
                200,
            ),
            // A late version of the counterparty, older than the move; and a
            // change of a column the dimension does not carry.
            (
                vec![(
                    "counterparty",
                    counterparty(7, "Acme Ltd", 1, "Ann", 5, 100),
                )],
                300,
            ),
            (
                vec![(
                    "counterparty",
                    counterparty(7, "Acme Ltd", 1, "Bob", 5, 400),
                )],
                500,
            ),
        ]
    }

    #[test]
    fn a_joined_change_opens_a_version_and_a_late_one_splits_its_interval() {
        let mut state = ReferenceState::default();
        let runs = runs();
        let first = apply(&mut state, &runs[0].0, runs[0].1);
        assert_eq!(
            spans(&first["dim_counterparty_history"]),
            vec![(7, "Acme@Leeds", 5, None, true)],
            "the first version is valid since the row was created"
        );

        let second = apply(&mut state, &runs[1].0, runs[1].1);
        assert_eq!(
            spans(&second["dim_counterparty_history"]),
            vec![
                (7, "Acme@Leeds", 5, Some(150), false),
                (7, "Acme@York", 150, None, true)
            ]
        );
        assert_eq!(
            spans(&second["dim_location_history"]),
            vec![
                (1, "Leeds", 0, Some(150), false),
                (1, "York", 150, None, true)
            ]
        );
        // Changed without a new last_updated: valid from when it was read.
        assert_eq!(
            spans(&second["dim_design_history"]),
            vec![
                (3, "Wave", 2, Some(200), false),
                (3, "Wave II", 200, None, true)
            ]
        );
        let york_key = second["dim_counterparty_history"][1].0;

        let third = apply(&mut state, &runs[2].0, runs[2].1);
        let split = &third["dim_counterparty_history"];
        assert_eq!(
            spans(split),
            vec![
                (7, "Acme@Leeds", 5, Some(100), false),
                (7, "Acme Ltd@Leeds", 100, Some(150), false),
                (7, "Acme Ltd@York", 150, None, true)
            ],
            "the late version splits [5, 150) and the version after it takes its name"
        );
        assert_eq!(split[2].0, york_key, "a split keeps its neighbours' keys");
        assert!(
            !third.contains_key("dim_location_history"),
            "only entities that gained a version are written"
        );

        let fourth = apply(&mut state, &runs[3].0, runs[3].1);
        assert_eq!(
            spans(&fourth["dim_counterparty_history"]),
            spans(split),
            "a change outside the dimension's columns opens no version"
        );
    }

    #[test]
    fn a_rerun_adds_nothing_and_a_rebuild_gives_the_same_history() {
        let runs = runs();
        let mut incremental = ReferenceState::default();
        for (run, at) in &runs {
            apply(&mut incremental, run, *at);
        }
        // The same runs again: no version is new.
        for (run, at) in &runs {
            assert!(apply(&mut incremental, run, *at).is_empty());
        }
        incremental.set_history_from_all(true);
        let everything = apply(&mut incremental, &Vec::new(), 0);

        // A rebuild reads every run in one go, in commit order.
        let mut rebuilt = ReferenceState::default();
        let mut raw: HashMap<&'static str, Vec<(RecordBatch, i64)>> = HashMap::new();
        for (run, at) in &runs {
            for (table, batch) in run {
                raw.entry(table).or_default().push((batch.clone(), *at));
            }
        }
        let gained = record_versions(&mut rebuilt, &raw).unwrap();
        let rebuilt: HashMap<_, _> = history_changes(&mut rebuilt, &gained)
            .unwrap()
            .into_iter()
            .map(|(t, b)| (t.name, versions(&b)))
            .collect();
        assert_eq!(rebuilt.len(), 3, "{rebuilt:?}");
        assert_eq!(rebuilt, everything, "same versions, same keys");
    }

    #[test]
    fn a_state_without_versions_starts_every_history_from_its_current_rows() {
        let mut state = ReferenceState::default();
        let mut old = ReferenceState::default();
        for (run, at) in runs() {
            apply(&mut state, &run, at);
        }
        for name in REFERENCE_TABLES {
            old.set_table(
                TableDef::by_name(name).unwrap().name,
                state.table(name).unwrap().clone(),
            );
        }
        seed_versions(&mut old).unwrap();
        let written = apply(&mut old, &Vec::new(), 0);
        assert_eq!(
            spans(&written["dim_counterparty_history"]),
            vec![(7, "Acme Ltd@York", 5, None, true)]
        );
        assert_eq!(written.len(), 3, "every history with rows is written");
        assert!(apply(&mut old, &Vec::new(), 0).is_empty(), "once");
    }
}
