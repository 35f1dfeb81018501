//! `tributary generate`: realistic totesys data in an empty database.
//!
//! The shape follows the real system: 30 addresses, 20 counterparties, 3
//! currencies, 8 departments, 20 staff, 4 payment types, designs added over
//! time, and orders each with exactly one transaction and one payment.
//! Payments flip to paid 2–6 days after they are created
//! ([`payment_flip_delay_ms`]), which the simulator continues live.

use std::fmt::Write as _;

use bytes::Bytes;
use chrono::{Datelike, Timelike};
use futures_util::{SinkExt, pin_mut};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use tokio_postgres::{Client, Transaction};

use crate::{Error, MODEL_INPUTS, Result};

/// The DDL of the source, as the generator creates it.
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

/// Sales orders per day at scale 1 (the real system averages about 15).
pub const SALES_PER_DAY: u64 = 15;
/// Purchase orders per day at scale 1 (the real system averages about 6).
pub const PURCHASES_PER_DAY: u64 = 6;

const DAY_MS: i64 = 86_400_000;
/// Orders generated and copied per round: bounds the generator's memory.
const ORDERS_PER_ROUND: u64 = 50_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Seed: the same seed and options give the same rows.
    pub seed: u64,
    /// Multiplies the order history.
    pub scale: u32,
    /// Days of history, ending at `until_ms`.
    pub days: u32,
    /// End of the history (ms since the epoch, UTC).
    pub until_ms: i64,
}

/// Rows written per table.
#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    /// `(table, rows)` in load order.
    pub rows: Vec<(&'static str, u64)>,
}

/// When payment `payment_id` flips from unpaid to paid, relative to its
/// creation: 2 days plus a spread of up to 4 days, derived from the id so the
/// generator and the simulator (in SQL, see `simulate`) agree.
pub fn payment_flip_delay_ms(payment_id: i64) -> i64 {
    2 * DAY_MS + (payment_id * 2_654_435_761).rem_euclid(4 * DAY_MS)
}

/// Creates the schema and fills it. Fails if any totesys table already exists.
pub async fn generate(client: &mut Client, options: &GenerateOptions) -> Result<GenerateReport> {
    if options.scale == 0 || options.days == 0 {
        return Err(Error::InvalidRequest(
            "--scale and --days must be at least 1".to_string(),
        ));
    }
    let existing: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = ANY($1)",
            &[&MODEL_INPUTS.iter().map(|t| t.name).collect::<Vec<_>>()],
        )
        .await?
        .get(0);
    if existing > 0 {
        return Err(Error::InvalidRequest(format!(
            "the database already has {existing} totesys tables; generate needs an empty database"
        )));
    }
    // Foreign keys are checked per row by triggers; the generated rows are
    // consistent by construction, so skip the triggers when allowed (superuser).
    let fast = client
        .batch_execute("SET session_replication_role = replica")
        .await
        .is_ok();
    let tx = client.transaction().await?;
    tx.batch_execute(SCHEMA_SQL).await?;
    let mut world = World::new(options);
    let mut report = GenerateReport::default();
    for (table, text) in world.reference_tables() {
        let rows = copy_text(&tx, table, &text).await?;
        report.rows.push((table, rows));
    }
    let mut totals = [0u64; 4];
    while let Some(round) = world.next_orders() {
        for (i, (table, text)) in round.into_iter().enumerate() {
            totals[i] += copy_text(&tx, table, &text).await?;
        }
    }
    for (i, table) in ORDER_TABLES.iter().enumerate() {
        report.rows.push((table, totals[i]));
    }
    for table in &MODEL_INPUTS {
        // Serial sequences must continue after the generated ids.
        tx.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('{0}', '{1}'), \
             COALESCE((SELECT max(\"{1}\") FROM \"{0}\"), 0) + 1, false)",
            table.name, table.primary_key
        ))
        .await?;
    }
    tx.commit().await?;
    if fast {
        client
            .batch_execute("RESET session_replication_role")
            .await?;
    }
    client.batch_execute("ANALYZE").await?;
    Ok(report)
}

const ORDER_TABLES: [&str; 4] = ["sales_order", "purchase_order", "transaction", "payment"];

/// Sends tab-separated rows through `COPY … FROM STDIN`; returns the row count.
async fn copy_text(tx: &Transaction<'_>, table: &'static str, text: &str) -> Result<u64> {
    if text.is_empty() {
        return Ok(0);
    }
    let statement = format!("COPY \"{table}\" FROM STDIN");
    let sink = tx.copy_in::<_, Bytes>(statement.as_str()).await?;
    pin_mut!(sink);
    for chunk in text.as_bytes().chunks(1 << 20) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    Ok(sink.finish().await?)
}

/// Appends `YYYY-MM-DD HH:MM:SS.mmm` for a UTC ms timestamp.
pub(crate) fn push_timestamp(out: &mut String, ms: i64) {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        out.push_str("1970-01-01 00:00:00.000");
        return;
    };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis()
    );
}

/// Appends `YYYY-MM-DD` for the UTC day of a ms timestamp.
pub(crate) fn push_date(out: &mut String, ms: i64) {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let _ = write!(out, "{:04}-{:02}-{:02}", t.year(), t.month(), t.day());
}

/// Appends a decimal with two places from an integer number of cents.
pub(crate) fn push_cents(out: &mut String, cents: i64) {
    let _ = write!(out, "{}.{:02}", cents / 100, cents % 100);
}

const STREETS: &[&str] = &[
    "Herzog Via",
    "Alexie Cliffs",
    "Sincere Fort",
    "Rogahn Skyway",
    "Upton Track",
    "Kailey Island",
    "Ernestine Ways",
    "Durgan Common",
    "Edward Garden",
    "Kaylah Flat",
    "Bernier Mission",
    "Arch Dale",
    "Bryce Common",
    "Haskell Trafficway",
    "Orin Extension",
    "Koch Drives",
];
const CITIES: &[&str] = &[
    "New Patienceburgh",
    "Aliso Viejo",
    "Lake Charles",
    "Olsonside",
    "Fort Shadburgh",
    "Kendraburgh",
    "North Deshaun",
    "Suffolk",
    "New Tyra",
    "Beaulahcester",
    "Pricetown",
];
const DISTRICTS: &[&str] = &[
    "Avon",
    "Bedfordshire",
    "Buckinghamshire",
    "Berkshire",
    "Borders",
    "Cambridgeshire",
];
const COUNTRIES: &[&str] = &[
    "Turkey",
    "San Marino",
    "Samoa",
    "Republic of Korea",
    "United Kingdom",
    "Australia",
    "Japan",
    "Austria",
    "Iceland",
    "Indonesia",
    "Sudan",
    "Guam",
    "Congo",
    "Tajikistan",
    "Bolivia",
];
const FIRST_NAMES: &[&str] = &[
    "Jeremie",
    "Deron",
    "Jeanette",
    "Ana",
    "Magdalena",
    "Korey",
    "Raphael",
    "Oswaldo",
    "Brody",
    "Jazmyn",
    "Meda",
    "Imani",
    "Stan",
    "Rigoberto",
    "Tom",
    "Pierre",
    "Flavio",
    "Irving",
    "Mariela",
    "Eveline",
    "Lucy",
    "Melba",
    "Jean",
    "Taylor",
    "Myra",
    "Alfredo",
];
const LAST_NAMES: &[&str] = &[
    "Franey",
    "Beier",
    "Erdman",
    "Glover",
    "Zieme",
    "Walsh",
    "Rippin",
    "Bednar",
    "Langosh",
    "Kuhn",
    "Bogisich",
    "Dare",
    "Lehner",
    "Hermann",
    "Gutkowski",
    "Balistreri",
    "Hackett",
    "Haag",
    "Toy",
];
const COMPANY_SUFFIXES: &[&str] = &[
    "and Sons",
    "Inc",
    "LLC",
    "Group",
    "- Pfannerstill",
    "and Daughters",
];
const DEPARTMENTS: &[(&str, &str, &str)] = &[
    ("Sales", "Manchester", "Richard Roma"),
    ("Purchasing", "Manchester", "Naomi Lapaglia"),
    ("Production", "Leeds", "Chester Ming"),
    ("Dispatch", "Leds", "Mark Hanna"),
    ("Finance", "Manchester", "Jordan Belfort"),
    ("Facilities", "Manchester", "Shelley Levene"),
    ("Communications", "Leeds", "Ann Blake"),
    ("HR", "Leeds", "James Link"),
];
const DESIGN_NAMES: &[&str] = &[
    "Wooden",
    "Bronze",
    "Soft",
    "Granite",
    "Concrete",
    "Steel",
    "Fresh",
    "Frozen",
    "Plastic",
    "Cotton",
    "Rubber",
    "Metal",
    "Bespoke",
    "Practical",
    "Refined",
    "Handcrafted",
];
const FILE_LOCATIONS: &[&str] = &[
    "/usr",
    "/private",
    "/lost+found",
    "/System",
    "/etc",
    "/opt",
    "/home",
    "/var",
];

/// Counts of the reference tables.
const ADDRESSES: i32 = 30;
const COUNTERPARTIES: i32 = 20;
const STAFF: i32 = 20;
const INITIAL_DESIGNS: u64 = 10;

/// The generator's state: where in the order history it is.
struct World {
    rng: StdRng,
    start_ms: i64,
    until_ms: i64,
    sales_total: u64,
    purchase_total: u64,
    designs_total: u64,
    next_order: u64,
    sales_id: i32,
    purchase_id: i32,
    transaction_id: i32,
}

impl World {
    fn new(options: &GenerateOptions) -> Self {
        let days = options.days as u64;
        let scale = options.scale as u64;
        Self {
            rng: StdRng::seed_from_u64(options.seed),
            start_ms: options.until_ms - days as i64 * DAY_MS,
            until_ms: options.until_ms,
            sales_total: SALES_PER_DAY * days * scale,
            purchase_total: PURCHASES_PER_DAY * days * scale,
            designs_total: INITIAL_DESIGNS + (days * 3) / 5,
            next_order: 0,
            sales_id: 0,
            purchase_id: 0,
            transaction_id: 0,
        }
    }

    fn orders_total(&self) -> u64 {
        self.sales_total + self.purchase_total
    }

    /// When design `n` (1-based) was created: the first few at the start,
    /// the rest spread over the history.
    fn design_created_ms(&self, n: u64) -> i64 {
        if n <= INITIAL_DESIGNS {
            return self.start_ms;
        }
        let span = (self.until_ms - self.start_ms) as u128;
        let later = (self.designs_total - INITIAL_DESIGNS).max(1) as u128;
        self.start_ms + (span * (n - INITIAL_DESIGNS) as u128 / (later + 1)) as i64
    }

    /// Designs that exist at `t`.
    fn designs_at(&self, t: i64) -> u64 {
        let (mut lo, mut hi) = (INITIAL_DESIGNS, self.designs_total);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.design_created_ms(mid) <= t {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    fn reference_tables(&mut self) -> Vec<(&'static str, String)> {
        let t0 = self.start_ms;
        let mut out = Vec::new();
        let rng = &mut self.rng;

        let mut s = String::new();
        for id in 1..=ADDRESSES {
            let line_2 = if rng.random_bool(0.4) {
                format!(
                    "{} {}",
                    pick(rng, LAST_NAMES),
                    pick(rng, STREETS).split(' ').next_back().unwrap_or("Way")
                )
            } else {
                "\\N".to_string()
            };
            let district = if rng.random_bool(0.5) {
                pick(rng, DISTRICTS).to_string()
            } else {
                "\\N".to_string()
            };
            let _ = write!(
                s,
                "{id}\t{} {}\t{line_2}\t{district}\t{}\t{:05}\t{}\t{:04} {:06}\t",
                rng.random_range(1..99_999),
                pick(rng, STREETS),
                pick(rng, CITIES),
                rng.random_range(0..99_999),
                pick(rng, COUNTRIES),
                rng.random_range(0..9_999),
                rng.random_range(0..999_999),
            );
            push_timestamp(&mut s, t0);
            s.push('\t');
            push_timestamp(&mut s, t0);
            s.push('\n');
        }
        out.push(("address", s));

        let mut s = String::new();
        for id in 1..=COUNTERPARTIES {
            let _ = write!(
                s,
                "{id}\t{} {}\t{}\t{} {}\t{} {}\t",
                pick(rng, LAST_NAMES),
                pick(rng, COMPANY_SUFFIXES),
                rng.random_range(1..=ADDRESSES),
                pick(rng, FIRST_NAMES),
                pick(rng, LAST_NAMES),
                pick(rng, FIRST_NAMES),
                pick(rng, LAST_NAMES),
            );
            push_timestamp(&mut s, t0 + 1_601);
            s.push('\t');
            push_timestamp(&mut s, t0 + 1_601);
            s.push('\n');
        }
        out.push(("counterparty", s));

        let mut s = String::new();
        for (id, code) in ["GBP", "USD", "EUR"].iter().enumerate() {
            let _ = write!(s, "{}\t{code}\t", id + 1);
            push_timestamp(&mut s, t0);
            s.push('\t');
            push_timestamp(&mut s, t0);
            s.push('\n');
        }
        out.push(("currency", s));

        let mut s = String::new();
        for (id, (name, location, manager)) in DEPARTMENTS.iter().enumerate() {
            let _ = write!(s, "{}\t{name}\t{location}\t{manager}\t", id + 1);
            push_timestamp(&mut s, t0);
            s.push('\t');
            push_timestamp(&mut s, t0);
            s.push('\n');
        }
        out.push(("department", s));

        let mut s = String::new();
        for id in 1..=self.designs_total {
            let created = self.design_created_ms(id);
            let name = pick(&mut self.rng, DESIGN_NAMES);
            let location = pick(&mut self.rng, FILE_LOCATIONS);
            let _ = write!(s, "{id}\t");
            push_timestamp(&mut s, created);
            let _ = write!(s, "\t{name}\t{location}\t{}-", name.to_lowercase());
            push_date(&mut s, created - self.rng.random_range(0..400) * DAY_MS);
            let suffix: String = (0..4)
                .map(|_| {
                    char::from(
                        b"abcdefghijklmnopqrstuvwxyz0123456789"[self.rng.random_range(0..36)],
                    )
                })
                .collect();
            let _ = write!(s, "-{suffix}.json\t");
            push_timestamp(&mut s, created);
            s.push('\n');
        }
        out.push(("design", s));

        let mut s = String::new();
        for (id, name) in [
            "SALES_RECEIPT",
            "SALES_REFUND",
            "PURCHASE_PAYMENT",
            "PURCHASE_REFUND",
        ]
        .iter()
        .enumerate()
        {
            let _ = write!(s, "{}\t{name}\t", id + 1);
            push_timestamp(&mut s, t0);
            s.push('\t');
            push_timestamp(&mut s, t0);
            s.push('\n');
        }
        out.push(("payment_type", s));

        let mut s = String::new();
        for id in 1..=STAFF {
            let first = pick(&mut self.rng, FIRST_NAMES);
            let last = pick(&mut self.rng, LAST_NAMES);
            let department = self.rng.random_range(1..=DEPARTMENTS.len());
            let _ = write!(
                s,
                "{id}\t{first}\t{last}\t{department}\t{}.{}@terrifictotes.com\t",
                first.to_lowercase(),
                last.to_lowercase()
            );
            push_timestamp(&mut s, t0 + 1_601);
            s.push('\t');
            push_timestamp(&mut s, t0 + 1_601);
            s.push('\n');
        }
        out.push(("staff", s));
        out
    }

    /// The next round of orders as COPY text for the four order tables, or
    /// `None` when the history is complete.
    fn next_orders(&mut self) -> Option<[(&'static str, String); 4]> {
        let total = self.orders_total();
        if self.next_order >= total {
            return None;
        }
        let end = (self.next_order + ORDERS_PER_ROUND).min(total);
        let mut texts: [String; 4] = Default::default();
        let span = (self.until_ms - self.start_ms) as u128;
        for n in self.next_order..end {
            let t = self.start_ms + (span * n as u128 / total as u128) as i64;
            // Sales and purchases interleave evenly at their daily ratio: take
            // whichever type is further behind its share of the history.
            let sales_done = (self.sales_id as u64 + 1) as u128 * self.purchase_total as u128;
            let purchases_done = (self.purchase_id as u64 + 1) as u128 * self.sales_total as u128;
            let is_sale = sales_done <= purchases_done && (self.sales_id as u64) < self.sales_total;
            self.order(t, is_sale, &mut texts);
        }
        self.next_order = end;
        let [a, b, c, d] = texts;
        Some([
            (ORDER_TABLES[0], a),
            (ORDER_TABLES[1], b),
            (ORDER_TABLES[2], c),
            (ORDER_TABLES[3], d),
        ])
    }

    fn order(&mut self, t: i64, is_sale: bool, texts: &mut [String; 4]) {
        let [sales, purchases, transactions, payments] = texts;
        let designs = self.designs_at(t).max(1);
        let rng = &mut self.rng;
        let counterparty = rng.random_range(1..=COUNTERPARTIES);
        let currency = rng.random_range(1..=3);
        let staff = rng.random_range(1..=STAFF);
        let location = rng.random_range(1..=ADDRESSES);
        let delivery = t + rng.random_range(1..=7) * DAY_MS;
        let due = t + rng.random_range(1..=7) * DAY_MS;
        self.transaction_id += 1;
        let transaction_id = self.transaction_id;
        let (amount_cents, payment_type) = if is_sale {
            self.sales_id += 1;
            let design = rng.random_range(1..=designs);
            let units: i64 = rng.random_range(1_000..=100_000);
            let price: i64 = rng.random_range(200..=400);
            let _ = write!(sales, "{}\t", self.sales_id);
            push_timestamp(sales, t);
            sales.push('\t');
            push_timestamp(sales, t);
            let _ = write!(sales, "\t{design}\t{staff}\t{counterparty}\t{units}\t");
            push_cents(sales, price);
            let _ = write!(sales, "\t{currency}\t");
            push_date(sales, delivery);
            sales.push('\t');
            push_date(sales, due);
            let _ = writeln!(sales, "\t{location}");
            (units * price, if rng.random_bool(0.02) { 2 } else { 1 })
        } else {
            self.purchase_id += 1;
            let quantity: i64 = rng.random_range(1..=1_000);
            let price: i64 = rng.random_range(100..=100_000);
            let code: String = (0..7)
                .map(|_| {
                    char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.random_range(0..36)])
                })
                .collect();
            let _ = write!(purchases, "{}\t", self.purchase_id);
            push_timestamp(purchases, t);
            purchases.push('\t');
            push_timestamp(purchases, t);
            let _ = write!(purchases, "\t{staff}\t{counterparty}\t{code}\t{quantity}\t");
            push_cents(purchases, price);
            let _ = write!(purchases, "\t{currency}\t");
            push_date(purchases, delivery);
            purchases.push('\t');
            push_date(purchases, due);
            let _ = writeln!(purchases, "\t{location}");
            (quantity * price, if rng.random_bool(0.02) { 4 } else { 3 })
        };
        let created = t + rng.random_range(0..3);
        let (kind, sale_ref, purchase_ref) = if is_sale {
            ("SALE", self.sales_id.to_string(), "\\N".to_string())
        } else {
            ("PURCHASE", "\\N".to_string(), self.purchase_id.to_string())
        };
        let _ = write!(
            transactions,
            "{transaction_id}\t{kind}\t{sale_ref}\t{purchase_ref}\t"
        );
        push_timestamp(transactions, created);
        transactions.push('\t');
        push_timestamp(transactions, created);
        transactions.push('\n');

        let flip = created + payment_flip_delay_ms(transaction_id as i64);
        let (paid, last_updated) = if flip <= self.until_ms {
            ("t", flip)
        } else {
            ("f", created)
        };
        let _ = write!(payments, "{transaction_id}\t");
        push_timestamp(payments, created);
        payments.push('\t');
        push_timestamp(payments, last_updated);
        let _ = write!(payments, "\t{transaction_id}\t{counterparty}\t");
        push_cents(payments, amount_cents);
        let _ = write!(payments, "\t{currency}\t{payment_type}\t{paid}\t");
        push_date(payments, t + rng.random_range(0..=5) * DAY_MS);
        let _ = writeln!(
            payments,
            "\t{}\t{}",
            rng.random_range(10_000_000..99_999_999),
            rng.random_range(10_000_000..99_999_999)
        );
    }
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> GenerateOptions {
        GenerateOptions {
            seed: 7,
            scale: 1,
            days: 30,
            until_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let collect = || {
            let mut world = World::new(&options());
            let mut all = world
                .reference_tables()
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>();
            while let Some(round) = world.next_orders() {
                all.extend(round.into_iter().map(|(_, s)| s));
            }
            all
        };
        assert_eq!(collect(), collect());
    }

    #[test]
    fn every_order_has_one_transaction_and_one_payment_within_ranges() {
        let mut world = World::new(&options());
        world.reference_tables();
        let [sales, purchases, transactions, payments] =
            world.next_orders().unwrap().map(|(_, s)| s);
        assert!(world.next_orders().is_none(), "30 days fit in one round");
        let sales_rows = sales.lines().count();
        let purchase_rows = purchases.lines().count();
        assert_eq!(sales_rows as u64, SALES_PER_DAY * 30);
        assert_eq!(purchase_rows as u64, PURCHASES_PER_DAY * 30);
        assert_eq!(transactions.lines().count(), sales_rows + purchase_rows);
        assert_eq!(payments.lines().count(), sales_rows + purchase_rows);
        for line in sales.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let units: i64 = fields[6].parse().unwrap();
            let price: f64 = fields[7].parse().unwrap();
            assert!((1_000..=100_000).contains(&units), "{line}");
            assert!((2.0..=4.0).contains(&price), "{line}");
        }
        for line in payments.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let id: i64 = fields[0].parse().unwrap();
            assert_eq!(fields[0], fields[3], "payment and transaction ids align");
            if fields[8] == "t" {
                assert_ne!(
                    fields[1], fields[2],
                    "a paid payment was updated when it flipped"
                );
            } else {
                assert_eq!(fields[1], fields[2]);
            }
            let delay = payment_flip_delay_ms(id);
            assert!((2 * DAY_MS..6 * DAY_MS).contains(&delay));
        }
    }

    #[test]
    fn designs_appear_over_time_and_orders_only_use_existing_ones() {
        let world = World::new(&GenerateOptions {
            days: 365,
            ..options()
        });
        assert_eq!(world.designs_at(world.start_ms), INITIAL_DESIGNS);
        assert_eq!(world.designs_at(world.until_ms), world.designs_total);
        let mid = world.start_ms + (world.until_ms - world.start_ms) / 2;
        let at_mid = world.designs_at(mid);
        assert!(world.design_created_ms(at_mid) <= mid);
        assert!(world.design_created_ms(at_mid + 1) > mid);
    }

    #[test]
    fn formatting_matches_postgres_text_input() {
        let mut s = String::new();
        push_timestamp(&mut s, 1_667_485_249_962);
        s.push(' ');
        push_date(&mut s, 1_667_485_249_962);
        s.push(' ');
        push_cents(&mut s, 55_254_862);
        s.push(' ');
        push_cents(&mut s, 5);
        assert_eq!(s, "2022-11-03 14:20:49.962 2022-11-03 552548.62 0.05");
    }
}
