//! Reference state and the dimensions built from it.
//!
//! The seven small source tables that dimensions are built (and joined) from
//! are kept in full, latest version per id, between runs. A change to any of
//! them re-emits every dimension row it reaches: an address change reaches
//! its `dim_location` row and every `dim_counterparty` row with that legal
//! address; a department change reaches its `dim_staff` rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_select::{concat::concat_batches, take::take};
use roaring::RoaringBitmap;
use tributary_totesys::{TableDef, row_fingerprint};

use super::{
    columns::{any, id_at, ints, strings, timestamps},
    history::versions_schema,
    quarantine::Quarantined,
};
use crate::{Result, WarehouseTable, currency::currency_name};

/// The source tables kept whole in the transform's state.
pub const REFERENCE_TABLES: [&str; 7] = [
    "address",
    "counterparty",
    "currency",
    "department",
    "design",
    "payment_type",
    "staff",
];

/// What the transform remembers between runs.
#[derive(Debug, Clone)]
pub struct ReferenceState {
    tables: BTreeMap<&'static str, RecordBatch>,
    transactions: RoaringBitmap,
    /// Every distinct version of each reference table, in commit order,
    /// with the time its ingest run started ([`super::history`]).
    versions: BTreeMap<&'static str, RecordBatch>,
    /// Set when the versions were seeded from a state that kept none: the
    /// next run writes the history of every entity.
    history_from_all: bool,
}

impl Default for ReferenceState {
    fn default() -> Self {
        let tables = REFERENCE_TABLES
            .iter()
            .filter_map(|name| TableDef::by_name(name))
            .map(|def| (def.name, RecordBatch::new_empty(def.arrow_schema())))
            .collect();
        let versions = REFERENCE_TABLES
            .iter()
            .filter_map(|name| TableDef::by_name(name))
            .map(|def| (def.name, RecordBatch::new_empty(versions_schema(def))))
            .collect();
        Self {
            tables,
            transactions: RoaringBitmap::new(),
            versions,
            history_from_all: false,
        }
    }
}

impl ReferenceState {
    /// Current rows of a reference table (latest version per id).
    pub fn table(&self, name: &str) -> Option<&RecordBatch> {
        self.tables.get(name)
    }

    /// Replaces a reference table (when reading state back).
    pub fn set_table(&mut self, name: &'static str, batch: RecordBatch) {
        self.tables.insert(name, batch);
    }

    /// Every distinct version of a reference table, in commit order.
    pub fn versions(&self, name: &str) -> Option<&RecordBatch> {
        self.versions.get(name)
    }

    /// Replaces the versions of a reference table.
    pub fn set_versions(&mut self, name: &'static str, batch: RecordBatch) {
        self.versions.insert(name, batch);
    }

    /// Whether the next history run covers every entity.
    pub fn history_from_all(&self) -> bool {
        self.history_from_all
    }

    /// Asks (or no longer asks) the next history run to cover every entity.
    pub fn set_history_from_all(&mut self, all: bool) {
        self.history_from_all = all;
    }

    /// Ids of every transaction seen.
    pub fn transactions(&self) -> &RoaringBitmap {
        &self.transactions
    }

    /// Replaces the transaction ids (when reading state back).
    pub fn set_transactions(&mut self, ids: RoaringBitmap) {
        self.transactions = ids;
    }

    /// Merges raw rows into a reference table, keeping the newest version of
    /// each id (by last_updated; among equals the later arrival). Returns the
    /// ids whose current row changed.
    fn merge(&mut self, name: &'static str, changes: &[RecordBatch]) -> Result<BTreeSet<i32>> {
        let Some(current) = self.tables.get(name) else {
            return Ok(BTreeSet::new());
        };
        if changes.iter().all(|b| b.num_rows() == 0) {
            return Ok(BTreeSet::new());
        }
        let old_rows = current.num_rows();
        let mut all = vec![current.clone()];
        all.extend(changes.iter().cloned());
        let combined = concat_batches(&current.schema(), &all)?;
        let ids = ints(&combined, &combined.schema().field(0).name().clone())?.clone();
        let lus = timestamps(&combined, "last_updated")?.clone();
        let mut winner: BTreeMap<i32, usize> = BTreeMap::new();
        for row in 0..combined.num_rows() {
            let Some(id) = id_at(&ids, row) else { continue };
            match winner.get(&id) {
                Some(&best) if lus.value(best) > lus.value(row) => {}
                _ => {
                    winner.insert(id, row);
                }
            }
        }
        let previous: HashMap<i32, usize> = (0..old_rows)
            .filter_map(|row| id_at(&ids, row).map(|id| (id, row)))
            .collect();
        let mut changed = BTreeSet::new();
        for (&id, &row) in &winner {
            let same = previous.get(&id).is_some_and(|&old| {
                row == old || row_fingerprint(&combined, row) == row_fingerprint(&combined, old)
            });
            if !same {
                changed.insert(id);
            }
        }
        let indices = UInt32Array::from_iter_values(winner.values().map(|&row| row as u32));
        let next = arrow_select::take::take_record_batch(&combined, &indices)?;
        self.tables.insert(name, next);
        Ok(changed)
    }
}

/// Foreign-key targets that facts may reference: ids present in the
/// dimensions (a counterparty whose address is unknown is not one).
#[derive(Debug, Default)]
pub struct KnownKeys {
    /// Per dimension table name, the ids it holds (as [`key_bits`]).
    pub ids: HashMap<&'static str, RoaringBitmap>,
    /// Ids in dim_transaction.
    pub transactions: RoaringBitmap,
}

/// An `i32` id as a bitmap member: the sign bit flipped, so every id,
/// negative ones included, has its own bit.
pub fn key_bits(id: i32) -> u32 {
    (id as u32) ^ 0x8000_0000
}

impl KnownKeys {
    /// Whether `dimension` holds `id`.
    pub fn contains(&self, dimension: &str, id: i32) -> bool {
        self.lookup(dimension)(id)
    }

    /// The membership test of one dimension, resolved once for a column's
    /// worth of lookups (an unknown dimension holds nothing).
    pub fn lookup(&self, dimension: &str) -> impl Fn(i32) -> bool + '_ {
        let (bitmap, signed) = if dimension == "dim_transaction" {
            (Some(&self.transactions), false)
        } else {
            (self.ids.get(dimension), true)
        };
        move |id| match (bitmap, signed) {
            (Some(ids), true) => ids.contains(key_bits(id)),
            (Some(ids), false) => u32::try_from(id).is_ok_and(|id| ids.contains(id)),
            (None, _) => false,
        }
    }
}

/// Dimension rows to write and rows refused.
#[derive(Debug, Default)]
pub struct DimensionChanges {
    /// New or changed rows per dimension.
    pub batches: Vec<(&'static WarehouseTable, RecordBatch)>,
    /// Source rows that could not become dimension rows.
    pub quarantine: Vec<Quarantined>,
}

/// Applies one run's raw rows to the state and builds the changed
/// dimension rows. `raw` maps source table names to their batches in commit order.
pub fn apply_reference_changes(
    state: &mut ReferenceState,
    raw: &HashMap<&'static str, Vec<RecordBatch>>,
) -> Result<DimensionChanges> {
    let empty = Vec::new();
    let mut changed: Changed = HashMap::new();
    for name in REFERENCE_TABLES {
        let batches = raw.get(name).unwrap_or(&empty);
        changed.insert(name, state.merge(name, batches)?);
    }
    let mut out = DimensionChanges::default();
    dim_location(state, &changed, &mut out)?;
    dim_counterparty(state, &changed, &mut out)?;
    dim_staff(state, &changed, &mut out)?;
    dim_currency(state, &changed, &mut out)?;
    dim_design_and_payment_type(state, &changed, &mut out)?;
    if let Some(batches) = raw.get("transaction").filter(|b| !b.is_empty()) {
        dim_transaction(state, batches, &mut out)?;
    }
    Ok(out)
}

/// The ids each reference table changed in this run.
type Changed = HashMap<&'static str, BTreeSet<i32>>;

fn table(name: &str) -> &'static WarehouseTable {
    WarehouseTable::by_name(name).expect("listed warehouse table")
}

/// Addresses that changed become their `dim_location` rows.
fn dim_location(
    state: &ReferenceState,
    changed: &Changed,
    out: &mut DimensionChanges,
) -> Result<()> {
    let address = current(state, "address")?;
    let dim = table("dim_location");
    out.push(
        dim,
        select(
            dim,
            &address,
            "address_id",
            &changed["address"],
            &[
                "address_id",
                "address_line_1",
                "address_line_2",
                "district",
                "city",
                "postal_code",
                "country",
                "phone",
            ],
        )?,
    );
    Ok(())
}

/// Counterparties re-emitted: changed ones, and those whose legal address changed.
fn dim_counterparty(
    state: &ReferenceState,
    changed: &Changed,
    out: &mut DimensionChanges,
) -> Result<()> {
    let address = current(state, "address")?;
    let counterparty = current(state, "counterparty")?;
    let legal = ints(&counterparty, "legal_address_id")?;
    let cp_ids = ints(&counterparty, "counterparty_id")?;
    let wanted: BTreeSet<i32> = (0..counterparty.num_rows())
        .filter(|&row| {
            id_at(cp_ids, row).is_some_and(|id| changed["counterparty"].contains(&id))
                || id_at(legal, row).is_some_and(|a| changed["address"].contains(&a))
        })
        .filter_map(|row| id_at(cp_ids, row))
        .collect();
    let joined = join(
        &counterparty,
        "counterparty_id",
        &wanted,
        "legal_address_id",
        &address,
        "address_id",
        "counterparty",
        "legal address",
    )?;
    out.quarantine.extend(joined.quarantine);
    let dim = table("dim_counterparty");
    out.push(
        dim,
        batch(
            dim,
            vec![
                take_col(&counterparty, "counterparty_id", &joined.left)?,
                take_col(&counterparty, "counterparty_legal_name", &joined.left)?,
                take_col(&address, "address_line_1", &joined.right)?,
                take_col(&address, "address_line_2", &joined.right)?,
                take_col(&address, "district", &joined.right)?,
                take_col(&address, "city", &joined.right)?,
                take_col(&address, "postal_code", &joined.right)?,
                take_col(&address, "country", &joined.right)?,
                take_col(&address, "phone", &joined.right)?,
            ],
        )?,
    );
    Ok(())
}

/// Staff re-emitted: changed ones, and those whose department changed.
fn dim_staff(state: &ReferenceState, changed: &Changed, out: &mut DimensionChanges) -> Result<()> {
    let staff = current(state, "staff")?;
    let department = current(state, "department")?;
    let staff_ids = ints(&staff, "staff_id")?;
    let departments = ints(&staff, "department_id")?;
    let wanted: BTreeSet<i32> = (0..staff.num_rows())
        .filter(|&row| {
            id_at(staff_ids, row).is_some_and(|id| changed["staff"].contains(&id))
                || id_at(departments, row).is_some_and(|d| changed["department"].contains(&d))
        })
        .filter_map(|row| id_at(staff_ids, row))
        .collect();
    let joined = join(
        &staff,
        "staff_id",
        &wanted,
        "department_id",
        &department,
        "department_id",
        "staff",
        "department",
    )?;
    out.quarantine.extend(joined.quarantine);
    let dim = table("dim_staff");
    out.push(
        dim,
        batch(
            dim,
            vec![
                take_col(&staff, "staff_id", &joined.left)?,
                take_col(&staff, "first_name", &joined.left)?,
                take_col(&staff, "last_name", &joined.left)?,
                take_col(&department, "department_name", &joined.right)?,
                take_col(&department, "location", &joined.right)?,
                take_col(&staff, "email_address", &joined.left)?,
            ],
        )?,
    );
    Ok(())
}

/// Currencies carry their ISO 4217 name; an unknown code is refused.
fn dim_currency(
    state: &ReferenceState,
    changed: &Changed,
    out: &mut DimensionChanges,
) -> Result<()> {
    let currency = current(state, "currency")?;
    let (named, refused) = currency_rows(&currency, &changed["currency"])?;
    out.quarantine.extend(refused);
    out.push(table("dim_currency"), named);
    Ok(())
}

/// Designs and payment types map one to one onto their dimensions.
fn dim_design_and_payment_type(
    state: &ReferenceState,
    changed: &Changed,
    out: &mut DimensionChanges,
) -> Result<()> {
    let design = current(state, "design")?;
    let dim = table("dim_design");
    out.push(
        dim,
        select(
            dim,
            &design,
            "design_id",
            &changed["design"],
            &["design_id", "design_name", "file_location", "file_name"],
        )?,
    );
    let payment_type = current(state, "payment_type")?;
    let dim = table("dim_payment_type");
    out.push(
        dim,
        select(
            dim,
            &payment_type,
            "payment_type_id",
            &changed["payment_type"],
            &["payment_type_id", "payment_type_name"],
        )?,
    );
    Ok(())
}

/// Transactions are many: only their ids are remembered; the latest version
/// of each one read becomes its `dim_transaction` row.
fn dim_transaction(
    state: &mut ReferenceState,
    batches: &[RecordBatch],
    out: &mut DimensionChanges,
) -> Result<()> {
    let mut emitted = RoaringBitmap::new();
    for batch in batches.iter().rev() {
        out.push(
            table("dim_transaction"),
            transactions_to_emit(state, batch, &mut emitted)?,
        );
    }
    Ok(())
}

/// The `dim_transaction` rows of one batch of raw transactions, streamed
/// newest first: the newest version of each id in the batch, unless an id
/// in `emitted` (the ids of newer batches of the same run) already covers
/// it. Ids join `emitted` and the state's known transactions.
///
/// Raw batches of one run are given newest file first: one extract holds
/// one row per id, so the first batch that has an id has its newest version.
pub fn transactions_to_emit(
    state: &mut ReferenceState,
    batch: &RecordBatch,
    emitted: &mut RoaringBitmap,
) -> Result<RecordBatch> {
    let latest = latest_per_id(batch, "transaction_id")?;
    let ids = ints(&latest, "transaction_id")?;
    let rows = UInt32Array::from_iter_values(
        (0..latest.num_rows())
            .filter(|&row| id_at(ids, row).is_some_and(|id| emitted.insert(key_bits(id))))
            .map(|row| row as u32),
    );
    state
        .transactions
        .extend(ids.iter().flatten().filter_map(|id| u32::try_from(id).ok()));
    let dim = table("dim_transaction");
    let arrays = [
        "transaction_id",
        "transaction_type",
        "sales_order_id",
        "purchase_order_id",
    ]
    .iter()
    .map(|name| take_col(&latest, name, &rows))
    .collect::<Result<Vec<_>>>()?;
    self::batch(dim, arrays)
}

/// The ids facts may reference after this state.
pub fn known_keys(state: &ReferenceState) -> Result<KnownKeys> {
    let mut keys = KnownKeys {
        transactions: state.transactions.clone(),
        ..KnownKeys::default()
    };
    let ids_of = |name: &str, column: &str| -> Result<HashSet<i32>> {
        Ok(ints(&current(state, name)?, column)?
            .iter()
            .flatten()
            .collect())
    };
    let addresses = ids_of("address", "address_id")?;
    let departments = ids_of("department", "department_id")?;
    let counterparty = current(state, "counterparty")?;
    let valid_counterparties = pairs(&counterparty, "counterparty_id", "legal_address_id")?
        .filter(|(_, address)| addresses.contains(address))
        .map(|(id, _)| id)
        .collect();
    let staff = current(state, "staff")?;
    let valid_staff = pairs(&staff, "staff_id", "department_id")?
        .filter(|(_, department)| departments.contains(department))
        .map(|(id, _)| id)
        .collect();
    let currency = current(state, "currency")?;
    let codes = strings(&currency, "currency_code")?;
    let currency_ids = ints(&currency, "currency_id")?;
    let valid_currencies = (0..currency.num_rows())
        .filter(|&row| !codes.is_null(row) && currency_name(codes.value(row)).is_some())
        .filter_map(|row| id_at(currency_ids, row))
        .collect();
    let bits = |ids: HashSet<i32>| ids.into_iter().map(key_bits).collect::<RoaringBitmap>();
    keys.ids.insert("dim_location", bits(addresses));
    keys.ids
        .insert("dim_counterparty", bits(valid_counterparties));
    keys.ids.insert("dim_staff", bits(valid_staff));
    keys.ids.insert("dim_currency", bits(valid_currencies));
    keys.ids
        .insert("dim_design", bits(ids_of("design", "design_id")?));
    keys.ids.insert(
        "dim_payment_type",
        bits(ids_of("payment_type", "payment_type_id")?),
    );
    Ok(keys)
}

impl DimensionChanges {
    fn push(&mut self, table: &'static WarehouseTable, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.batches.push((table, batch));
        }
    }
}

fn current(state: &ReferenceState, name: &str) -> Result<RecordBatch> {
    state.table(name).cloned().ok_or_else(|| {
        arrow_schema::ArrowError::SchemaError(format!("no reference state for {name}")).into()
    })
}

fn pairs<'a>(
    batch: &'a RecordBatch,
    a: &str,
    b: &str,
) -> Result<impl Iterator<Item = (i32, i32)> + 'a> {
    let first = ints(batch, a)?;
    let second = ints(batch, b)?;
    Ok(
        (0..batch.num_rows())
            .filter_map(move |row| Some((id_at(first, row)?, id_at(second, row)?))),
    )
}

fn batch(table: &WarehouseTable, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(table.arrow_schema(), columns)?)
}

fn take_col(batch: &RecordBatch, name: &str, rows: &UInt32Array) -> Result<ArrayRef> {
    Ok(take(any(batch, name)?.as_ref(), rows, None)?)
}

/// Rows of `batch` whose `key` is in `ids`, taking `columns` in order into
/// the dimension `dim` (same order, the dimension's names).
fn select(
    dim: &WarehouseTable,
    batch: &RecordBatch,
    key: &str,
    ids: &BTreeSet<i32>,
    columns: &[&str],
) -> Result<RecordBatch> {
    let keys = ints(batch, key)?;
    let rows = UInt32Array::from_iter_values(
        (0..batch.num_rows())
            .filter(|&row| id_at(keys, row).is_some_and(|id| ids.contains(&id)))
            .map(|row| row as u32),
    );
    let arrays = columns
        .iter()
        .map(|name| take_col(batch, name, &rows))
        .collect::<Result<Vec<_>>>()?;
    self::batch(dim, arrays)
}

/// Row pairs of a many-to-one join, and the left rows without a partner.
struct Joined {
    left: UInt32Array,
    right: UInt32Array,
    quarantine: Vec<Quarantined>,
}

#[allow(clippy::too_many_arguments)]
fn join(
    left: &RecordBatch,
    left_key: &str,
    wanted: &BTreeSet<i32>,
    foreign: &str,
    right: &RecordBatch,
    right_key: &str,
    source: &'static str,
    what: &str,
) -> Result<Joined> {
    let right_rows: HashMap<i32, u32> = {
        let keys = ints(right, right_key)?;
        (0..right.num_rows())
            .filter_map(|row| Some((id_at(keys, row)?, row as u32)))
            .collect()
    };
    let keys = ints(left, left_key)?;
    let references = ints(left, foreign)?;
    let (mut l, mut r, mut quarantine) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..left.num_rows() {
        if !id_at(keys, row).is_some_and(|id| wanted.contains(&id)) {
            continue;
        }
        match id_at(references, row).and_then(|id| right_rows.get(&id)) {
            Some(&partner) => {
                l.push(row as u32);
                r.push(partner);
            }
            None => quarantine.push(Quarantined::new(
                source,
                left,
                row,
                format!(
                    "{foreign} {} is not a known {what}",
                    id_at(references, row).map_or("NULL".to_string(), |v| v.to_string())
                ),
            )),
        }
    }
    Ok(Joined {
        left: UInt32Array::from(l),
        right: UInt32Array::from(r),
        quarantine,
    })
}

fn currency_rows(
    currency: &RecordBatch,
    ids: &BTreeSet<i32>,
) -> Result<(RecordBatch, Vec<Quarantined>)> {
    let keys = ints(currency, "currency_id")?;
    let codes = strings(currency, "currency_code")?;
    let (mut rows, mut names, mut refused) = (Vec::new(), Vec::new(), Vec::new());
    for row in 0..currency.num_rows() {
        if !id_at(keys, row).is_some_and(|id| ids.contains(&id)) {
            continue;
        }
        let code = (!codes.is_null(row)).then(|| codes.value(row));
        match code.and_then(currency_name) {
            Some(name) => {
                rows.push(row as u32);
                names.push(name);
            }
            None => refused.push(Quarantined::new(
                "currency",
                currency,
                row,
                format!(
                    "currency_code {:?} is not an active ISO 4217 code",
                    code.unwrap_or("NULL")
                ),
            )),
        }
    }
    let rows = UInt32Array::from(rows);
    let dim = WarehouseTable::by_name("dim_currency").expect("listed warehouse table");
    let named = batch(
        dim,
        vec![
            take_col(currency, "currency_id", &rows)?,
            take_col(currency, "currency_code", &rows)?,
            Arc::new(StringArray::from(names)),
        ],
    )?;
    Ok((named, refused))
}

/// The newest version of each id among `batch`'s rows.
fn latest_per_id(batch: &RecordBatch, key: &str) -> Result<RecordBatch> {
    let ids = ints(batch, key)?;
    if ids.null_count() == 0 && ids.values().windows(2).all(|w| w[0] < w[1]) {
        // Ids strictly rising (an extract in key order): one row per id.
        return Ok(batch.clone());
    }
    let lus = timestamps(batch, "last_updated")?;
    let mut winner: BTreeMap<i32, usize> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let Some(id) = id_at(ids, row) else { continue };
        match winner.get(&id) {
            Some(&best) if lus.value(best) > lus.value(row) => {}
            _ => {
                winner.insert(id, row);
            }
        }
    }
    let indices = UInt32Array::from_iter_values(winner.values().map(|&row| row as u32));
    Ok(arrow_select::take::take_record_batch(batch, &indices)?)
}
