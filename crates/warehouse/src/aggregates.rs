//! Aggregates for dashboards, kept incrementally by the loads.
//!
//! A load notes the highest record key of each fact table before it adds
//! rows ([`FactMarks`]); after them, in the same transaction, [`refresh`]
//! recomputes only the days the new rows touch. Trades do the same per coin
//! and day, and per coin and minute for the last day
//! ([`refresh_trades`]). Every figure is recomputed from the facts of its
//! day, never adjusted: a re-run, a rebuild and a backfill give the same
//! numbers. The tables are described in `warehouse.sql`.

use std::time::{Duration, Instant};

use tokio_postgres::Transaction;

use crate::Result;

/// The highest record key of each fact table before a load.
#[derive(Debug, Clone, Copy, Default)]
pub struct FactMarks {
    sales: i32,
    payments: i32,
}

/// What a refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Days (or coin-days) recomputed.
    pub days: u64,
    /// Aggregate rows written.
    pub rows: u64,
    /// Time taken.
    pub elapsed: Duration,
}

/// Notes where each fact table ends (record keys only grow). While an
/// aggregate family is empty (a warehouse loaded before aggregates existed)
/// its mark is 0, so the next load computes every day once.
pub async fn marks(tx: &Transaction<'_>) -> Result<FactMarks> {
    let row = tx
        .query_one(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM agg_sales_hourly) \
                         THEN (SELECT COALESCE(max(sales_record_id), 0) FROM fact_sales_order) ELSE 0 END, \
                    CASE WHEN EXISTS (SELECT 1 FROM agg_payment_delay_daily) \
                         THEN (SELECT COALESCE(max(payment_record_id), 0) FROM fact_payment) ELSE 0 END",
            &[],
        )
        .await?;
    Ok(FactMarks {
        sales: row.get(0),
        payments: row.get(1),
    })
}

/// The newest version of each sales order created on a touched day.
///
/// The touched days are given as an array (`= ANY (ARRAY(…))`), not `IN
/// (SELECT …)`: with the semi-join the planner read all of `fact_payment`
/// (1.4 M rows, 335 ms for 13 days) instead of its date index (75 ms).
const LATEST_SALES: &str = "\
    SELECT DISTINCT ON (f.sales_order_id) f.* \
    FROM fact_sales_order f \
    WHERE f.created_date = ANY (ARRAY(SELECT day FROM touched_sales)) \
    ORDER BY f.sales_order_id, f.last_updated_date DESC, f.last_updated_time DESC";

/// Recomputes the aggregates of the days that fact rows numbered after
/// `marks` touch.
pub async fn refresh(tx: &Transaction<'_>, marks: FactMarks) -> Result<Refreshed> {
    let started = Instant::now();
    let mut rows = 0;
    tx.execute(
        "CREATE TEMP TABLE touched_sales ON COMMIT DROP AS \
         SELECT DISTINCT created_date AS day FROM fact_sales_order WHERE sales_record_id > $1",
        &[&marks.sales],
    )
    .await?;
    tx.execute(
        "CREATE TEMP TABLE touched_payments ON COMMIT DROP AS \
         SELECT DISTINCT payment_date AS day FROM fact_payment WHERE payment_record_id > $1",
        &[&marks.payments],
    )
    .await?;
    // Without statistics the planner takes a temporary table for thousands
    // of days and scans the whole fact table instead of its date index (a
    // minute's load: 250 ms instead of 1 ms at 1M orders).
    tx.batch_execute("ANALYZE touched_sales; ANALYZE touched_payments")
        .await?;
    let days: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM touched_sales) + (SELECT count(*) FROM touched_payments)",
            &[],
        )
        .await?
        .get(0);
    if days > 0 {
        // The newest version of each order of those days, sorted out once
        // for the three sales aggregates.
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE latest_sales ON COMMIT DROP AS {LATEST_SALES}"
        ))
        .await?;
        for table in [
            "agg_sales_daily",
            "agg_sales_hourly",
            "agg_delivery_lead_time_daily",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE day IN (SELECT day FROM touched_sales)"),
                &[],
            )
            .await?;
        }
        tx.execute(
            "DELETE FROM agg_payment_delay_daily WHERE day IN (SELECT day FROM touched_payments)",
            &[],
        )
        .await?;
        rows += tx
            .execute(
                "INSERT INTO agg_sales_daily (day, country, design_id, currency_code, orders, \
                       units, value_sum, value_mean, value_p90) \
                     SELECT l.created_date, COALESCE(cp.counterparty_legal_country, 'unknown'), \
                            l.design_id, cu.currency_code, count(*), sum(l.units_sold), \
                            sum(l.units_sold * l.unit_price), avg(l.units_sold * l.unit_price), \
                            percentile_cont(0.9) WITHIN GROUP (ORDER BY (l.units_sold * l.unit_price)::float8) \
                     FROM latest_sales l \
                     JOIN dim_currency cu ON cu.currency_id = l.currency_id \
                     LEFT JOIN dim_counterparty_history cp \
                            ON cp.counterparty_id = l.counterparty_id \
                           AND (cp.valid_from <= l.last_updated_date + l.last_updated_time OR cp.version = 1) \
                           AND (cp.valid_to IS NULL OR l.last_updated_date + l.last_updated_time < cp.valid_to) \
                     GROUP BY 1, 2, 3, 4",
                &[],
            )
            .await?;
        rows += tx
            .execute(
                "INSERT INTO agg_sales_hourly (day, hour, orders, units) \
                     SELECT l.created_date, extract(hour FROM l.created_time)::int, count(*), \
                            sum(l.units_sold) \
                     FROM latest_sales l GROUP BY 1, 2",
                &[],
            )
            .await?;
        rows += tx
            .execute(
                "INSERT INTO agg_delivery_lead_time_daily (day, orders, days_sum, days_mean, days_p90) \
                     SELECT l.created_date, count(*), sum(l.agreed_delivery_date - l.created_date), \
                            avg(l.agreed_delivery_date - l.created_date), \
                            percentile_cont(0.9) WITHIN GROUP (ORDER BY l.agreed_delivery_date - l.created_date) \
                     FROM latest_sales l GROUP BY 1",
                &[],
            )
            .await?;
        rows += tx
            .execute(
                "INSERT INTO agg_payment_delay_daily (day, currency_code, payments, paid, amount_sum, \
                   delay_days_sum, delay_days_mean, delay_days_p90) \
                 WITH versions AS ( \
                   SELECT f.*, f.last_updated_date + f.last_updated_time AS updated_at \
                   FROM fact_payment f \
                   WHERE f.payment_date = ANY (ARRAY(SELECT day FROM touched_payments))), \
                 per_payment AS ( \
                   SELECT DISTINCT ON (payment_id) payment_id, payment_date, currency_id, payment_amount, \
                          min(updated_at) FILTER (WHERE paid) OVER (PARTITION BY payment_id) AS paid_at \
                   FROM versions ORDER BY payment_id, updated_at DESC), \
                 delays AS ( \
                   SELECT *, (extract(epoch FROM paid_at - payment_date::timestamp) / 86400)::numeric AS delay \
                   FROM per_payment) \
                 SELECT d.payment_date, cu.currency_code, count(*), count(d.paid_at), \
                        sum(d.payment_amount), sum(d.delay), avg(d.delay), \
                        percentile_cont(0.9) WITHIN GROUP (ORDER BY d.delay::float8) \
                 FROM delays d JOIN dim_currency cu ON cu.currency_id = d.currency_id \
                 GROUP BY 1, 2",
                &[],
            )
            .await?;
    }
    tx.batch_execute(
        "DROP TABLE touched_sales; DROP TABLE touched_payments; DROP TABLE IF EXISTS latest_sales",
    )
    .await?;
    Ok(Refreshed {
        days: days as u64,
        rows,
        elapsed: started.elapsed(),
    })
}

/// Creates `touched_trades (symbol, day)`, the coin-days a markets load
/// adds trades to, for [`refresh_trades`] (dropped at commit).
/// While the trade aggregates are empty (a warehouse loaded before they
/// existed) every coin-day with trades starts touched.
pub async fn start_trades(tx: &Transaction<'_>) -> Result<()> {
    tx.batch_execute(
        "CREATE TEMP TABLE touched_trades (symbol varchar, day date, PRIMARY KEY (symbol, day)) \
         ON COMMIT DROP; \
         INSERT INTO touched_trades \
         SELECT DISTINCT symbol, traded_at::date FROM fact_trade \
         WHERE NOT EXISTS (SELECT 1 FROM agg_trades_daily)",
    )
    .await?;
    Ok(())
}

/// Recomputes the trade aggregates of the coin-days in `touched_trades`
/// (per minute, only the minutes of the last day), and drops minutes older
/// than a day.
pub async fn refresh_trades(tx: &Transaction<'_>) -> Result<Refreshed> {
    let started = Instant::now();
    tx.batch_execute("ANALYZE touched_trades").await?;
    let days: i64 = tx
        .query_one("SELECT count(*) FROM touched_trades", &[])
        .await?
        .get(0);
    let mut rows = 0;
    if days > 0 {
        tx.execute(
            "DELETE FROM agg_trades_daily a USING touched_trades t \
             WHERE a.symbol = t.symbol AND a.day = t.day",
            &[],
        )
        .await?;
        rows += tx
            .execute(
                "INSERT INTO agg_trades_daily (symbol, day, trades, base_volume, quote_volume, \
                   size_mean, size_p90) \
                 SELECT t.symbol, t.day, count(*), sum(f.amount), sum(f.price * f.amount), \
                        avg(f.amount), percentile_cont(0.9) WITHIN GROUP (ORDER BY f.amount::float8) \
                 FROM touched_trades t \
                 JOIN fact_trade f ON f.symbol = t.symbol \
                  AND f.traded_at >= t.day AND f.traded_at < t.day + 1 \
                 GROUP BY 1, 2",
                &[],
            )
            .await?;
        let cutoff = "date_trunc('minute', now() AT TIME ZONE 'UTC') - interval '1 day'";
        tx.execute(
            &format!(
                "DELETE FROM agg_trades_minute a USING touched_trades t \
                 WHERE a.symbol = t.symbol AND a.minute >= t.day AND a.minute < t.day + 1 \
                   AND a.minute >= {cutoff}"
            ),
            &[],
        )
        .await?;
        rows += tx
            .execute(
                &format!(
                    "INSERT INTO agg_trades_minute (symbol, minute, trades, base_volume) \
                     SELECT t.symbol, date_trunc('minute', f.traded_at), count(*), sum(f.amount) \
                     FROM touched_trades t \
                     JOIN fact_trade f ON f.symbol = t.symbol \
                      AND f.traded_at >= greatest(t.day::timestamp, {cutoff}) \
                      AND f.traded_at < t.day + 1 \
                     GROUP BY 1, 2"
                ),
                &[],
            )
            .await?;
    }
    tx.execute(
        "DELETE FROM agg_trades_minute \
         WHERE minute < date_trunc('minute', now() AT TIME ZONE 'UTC') - interval '1 day'",
        &[],
    )
    .await?;
    tx.batch_execute("DROP TABLE touched_trades").await?;
    Ok(Refreshed {
        days: days as u64,
        rows,
        elapsed: started.elapsed(),
    })
}
