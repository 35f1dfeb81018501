//! `tributary simulate`: keeps the source changing like the live system.
//!
//! Each second it inserts orders at the requested rate (each a sales or
//! purchase order with its transaction and payment, in one database
//! transaction), flips payments whose 2–6 day delay has passed, and now and
//! then changes an address or moves a staff member to another department.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use tokio_postgres::Client;

use crate::{Error, Result};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Orders per minute.
    pub orders_per_minute: f64,
    /// Stop after this long; `None` runs until the stop signal.
    pub duration: Option<Duration>,
    /// Seed for the random choices.
    pub seed: u64,
    /// One address change and one staff move per this many orders (0: never).
    pub churn_every: u64,
}

/// What a simulation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimulateReport {
    /// Orders inserted.
    pub orders: u64,
    /// Payments flipped to paid.
    pub payments_paid: u64,
    /// Address and staff rows changed.
    pub reference_changes: u64,
}

const NOW: &str = "(now() AT TIME ZONE 'UTC')::timestamp(3)";

/// Runs until `duration` passes or `stop` resolves.
pub async fn simulate(
    client: &mut Client,
    options: &SimulateOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<SimulateReport> {
    if !(options.orders_per_minute.is_finite() && options.orders_per_minute >= 0.0) {
        return Err(Error::InvalidRequest(
            "--rate must be a non-negative number of orders per minute".to_string(),
        ));
    }
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut report = SimulateReport::default();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let elapsed = started.elapsed();
        let finished = options.duration.is_some_and(|d| elapsed >= d);
        let elapsed = options.duration.map_or(elapsed, |d| elapsed.min(d));
        let due = (elapsed.as_secs_f64() / 60.0 * options.orders_per_minute) as u64;
        while report.orders < due {
            insert_order(client, &mut rng).await?;
            report.orders += 1;
            if options.churn_every > 0 && report.orders % options.churn_every == 0 {
                report.reference_changes += change_reference_rows(client, &mut rng).await?;
            }
        }
        report.payments_paid += flip_due_payments(client).await?;
        if finished {
            break;
        }
    }
    Ok(report)
}

/// Inserts one order with its transaction and payment, as the live system does.
pub async fn insert_order(client: &mut Client, rng: &mut StdRng) -> Result<()> {
    let is_sale = rng.random_bool(15.0 / 21.0);
    let counterparty: i32 = rng.random_range(1..=20);
    let staff: i32 = rng.random_range(1..=20);
    let currency: i32 = rng.random_range(1..=3);
    let location: i32 = rng.random_range(1..=30);
    let delivery_days: i32 = rng.random_range(1..=7);
    let payment_days: i32 = rng.random_range(1..=7);
    let tx = client.transaction().await?;
    if is_sale {
        let units: i32 = rng.random_range(1_000..=100_000);
        let price = format!("{:.2}", rng.random_range(200..=400) as f64 / 100.0);
        let refund = rng.random_bool(0.02);
        tx.execute(
            &format!(
                "WITH so AS (
                   INSERT INTO sales_order (created_at, last_updated, design_id, staff_id,
                     counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date,
                     agreed_payment_date, agreed_delivery_location_id)
                   SELECT {NOW}, {NOW}, (SELECT design_id FROM design ORDER BY random() LIMIT 1),
                     $1, $2, $3, $4::text::numeric, $5,
                     to_char(current_date + $6::int, 'YYYY-MM-DD'),
                     to_char(current_date + $7::int, 'YYYY-MM-DD'), $8
                   RETURNING sales_order_id, units_sold * unit_price AS amount),
                 tr AS (
                   INSERT INTO transaction (transaction_type, sales_order_id, created_at, last_updated)
                   SELECT 'SALE', sales_order_id, {NOW}, {NOW} FROM so RETURNING transaction_id)
                 INSERT INTO payment (created_at, last_updated, transaction_id, counterparty_id,
                   payment_amount, currency_id, payment_type_id, paid, payment_date,
                   company_ac_number, counterparty_ac_number)
                 SELECT {NOW}, {NOW}, tr.transaction_id, $2, so.amount, $5, $9, false,
                   to_char(current_date + $7::int, 'YYYY-MM-DD'), $10, $11
                 FROM so, tr"
            ),
            &[
                &staff,
                &counterparty,
                &units,
                &price,
                &currency,
                &delivery_days,
                &payment_days,
                &location,
                &(if refund { 2i32 } else { 1i32 }),
                &rng.random_range(10_000_000..99_999_999i32),
                &rng.random_range(10_000_000..99_999_999i32),
            ],
        )
        .await?;
    } else {
        let quantity: i32 = rng.random_range(1..=1_000);
        let price = format!("{:.2}", rng.random_range(100..=100_000) as f64 / 100.0);
        let code: String = (0..7)
            .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[rng.random_range(0..36)]))
            .collect();
        tx.execute(
            &format!(
                "WITH po AS (
                   INSERT INTO purchase_order (created_at, last_updated, staff_id, counterparty_id,
                     item_code, item_quantity, item_unit_price, currency_id, agreed_delivery_date,
                     agreed_payment_date, agreed_delivery_location_id)
                   VALUES ({NOW}, {NOW}, $1, $2, $3, $4, $5::text::numeric, $6,
                     to_char(current_date + $7::int, 'YYYY-MM-DD'),
                     to_char(current_date + $8::int, 'YYYY-MM-DD'), $9)
                   RETURNING purchase_order_id, item_quantity * item_unit_price AS amount),
                 tr AS (
                   INSERT INTO transaction (transaction_type, purchase_order_id, created_at, last_updated)
                   SELECT 'PURCHASE', purchase_order_id, {NOW}, {NOW} FROM po RETURNING transaction_id)
                 INSERT INTO payment (created_at, last_updated, transaction_id, counterparty_id,
                   payment_amount, currency_id, payment_type_id, paid, payment_date,
                   company_ac_number, counterparty_ac_number)
                 SELECT {NOW}, {NOW}, tr.transaction_id, $2, po.amount, $6, 3, false,
                   to_char(current_date + $8::int, 'YYYY-MM-DD'), $10, $11
                 FROM po, tr"
            ),
            &[
                &staff,
                &counterparty,
                &code,
                &quantity,
                &price,
                &currency,
                &delivery_days,
                &payment_days,
                &location,
                &rng.random_range(10_000_000..99_999_999i32),
                &rng.random_range(10_000_000..99_999_999i32),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Marks paid every payment whose delay ([`crate::generate::payment_flip_delay_ms`],
/// the same formula in SQL) has passed.
pub async fn flip_due_payments(client: &Client) -> Result<u64> {
    Ok(client
        .execute(
            &format!(
                "UPDATE payment SET paid = true, last_updated = {NOW}
                 WHERE NOT paid
                   AND created_at + interval '2 days'
                       + ((payment_id::bigint * 2654435761) % 345600000) * interval '1 millisecond'
                       <= {NOW}"
            ),
            &[],
        )
        .await?)
}

/// Changes one address's phone number and moves one staff member to another
/// department: the slowly changing side of the source.
pub async fn change_reference_rows(client: &Client, rng: &mut StdRng) -> Result<u64> {
    let phone = format!(
        "{:04} {:06}",
        rng.random_range(0..9_999),
        rng.random_range(0..999_999)
    );
    let address: i32 = rng.random_range(1..=30);
    let staff: i32 = rng.random_range(1..=20);
    let department: i32 = rng.random_range(1..=8);
    let addresses = client
        .execute(
            &format!("UPDATE address SET phone = $1, last_updated = {NOW} WHERE address_id = $2"),
            &[&phone, &address],
        )
        .await?;
    let staff_moves = client
        .execute(
            &format!(
                "UPDATE staff SET department_id = $1, last_updated = {NOW} \
                 WHERE staff_id = $2 AND department_id <> $1"
            ),
            &[&department, &staff],
        )
        .await?;
    Ok(addresses + staff_moves)
}
