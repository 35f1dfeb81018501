//! Exchange rates in the warehouse: `fact_exchange_rate` (a rate for every
//! calendar day and currency, into the reporting currency), the facts'
//! `*_reporting` views and `exchange_rate_gaps` (`fx.sql`).
//!
//! The rates themselves are computed by the pipeline from the raw lake;
//! this module creates the tables and views, writes rates (idempotently:
//! a row that would not change is not touched) and reads the facts' dates.

use chrono::NaiveDate;
use tokio_postgres::Client;

use crate::{Result, WAREHOUSE_DDL};

/// The exchange-rate DDL (tables and views), idempotent.
pub const FX_DDL: &str = include_str!("fx.sql");

/// Rows sent per statement.
const ROWS_PER_STATEMENT: usize = 5_000;

/// Creates the star schema (if absent) and the exchange-rate tables and
/// views, in one transaction; safe to run at any time and concurrently.
/// Without `force`, only when this version's DDL is not in place already
/// ([`crate::apply_ddl`]).
pub async fn init(client: &Client, force: bool) -> Result<()> {
    let ddl = format!(
        "SELECT pg_advisory_xact_lock(hashtext('tributary.fx_init'));\n{WAREHOUSE_DDL}\n{FX_DDL}"
    );
    let mut expected = crate::warehouse_relations();
    expected.push("fact_exchange_rate");
    crate::apply_ddl(client, "warehouse_fx", &ddl, &expected, force).await
}

/// One day's rate of one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRow {
    /// The calendar day.
    pub date: NaiveDate,
    /// ISO 4217 code.
    pub currency_code: String,
    /// Exact decimal text: an amount in `currency_code` times this is the
    /// amount in the reporting currency.
    pub rate_to_reporting: String,
    /// The publication day the rate comes from (on or before `date`).
    pub published_date: NaiveDate,
}

/// What writing rates did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedRates {
    /// Rows that were not there.
    pub inserted: u64,
    /// Rows whose rate or publication day changed (e.g. a day first filled
    /// with the day before's rate, before its own was published).
    pub updated: u64,
    /// Rows deleted because the reporting currency changed.
    pub cleared: u64,
}

/// Writes `rows`, all into `reporting`, in one transaction. When the
/// warehouse's rates were into another currency, they are all deleted
/// first (and counted in [`AppliedRates::cleared`]).
pub async fn apply_rates(
    client: &mut Client,
    reporting: &str,
    rows: &[RateRow],
) -> Result<AppliedRates> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('tributary.fx_apply'))",
        &[],
    )
    .await?;
    let mut applied = AppliedRates::default();
    let current: Option<String> = tx
        .query_opt("SELECT reporting_currency FROM tributary.fx_reporting", &[])
        .await?
        .map(|row| row.get(0));
    if current.as_deref() != Some(reporting) {
        if let Some(previous) = &current {
            applied.cleared = tx.execute("DELETE FROM fact_exchange_rate", &[]).await?;
            tracing::warn!(
                previous = %previous,
                reporting,
                cleared = applied.cleared,
                "the reporting currency changed: every rate was deleted; backfill the facts' dates again (tributary fx --for-facts)"
            );
        }
        tx.execute(
            "INSERT INTO tributary.fx_reporting (singleton, reporting_currency) VALUES (true, $1)
             ON CONFLICT (singleton) DO UPDATE SET reporting_currency = EXCLUDED.reporting_currency, changed_at = now()",
            &[&reporting],
        )
        .await?;
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let dates: Vec<String> = chunk.iter().map(|r| r.date.to_string()).collect();
        let codes: Vec<&str> = chunk.iter().map(|r| r.currency_code.as_str()).collect();
        let rates: Vec<&str> = chunk.iter().map(|r| r.rate_to_reporting.as_str()).collect();
        let published: Vec<String> = chunk.iter().map(|r| r.published_date.to_string()).collect();
        let row = tx
            .query_one(
                "WITH input AS (
                     SELECT DISTINCT ON (d::date, c) d::date AS date, c AS currency_code,
                            r::numeric AS rate, p::date AS published
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(d, c, r, p)
                     ORDER BY d::date, c
                 ), upserted AS (
                     INSERT INTO fact_exchange_rate AS x (date, currency_code, rate_to_reporting, published_date)
                     SELECT date, currency_code, rate, published FROM input
                     ON CONFLICT (date, currency_code) DO UPDATE
                         SET rate_to_reporting = EXCLUDED.rate_to_reporting,
                             published_date = EXCLUDED.published_date
                         WHERE (x.rate_to_reporting, x.published_date)
                               IS DISTINCT FROM (EXCLUDED.rate_to_reporting, EXCLUDED.published_date)
                     RETURNING (xmax = 0) AS inserted
                 )
                 SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
                 FROM upserted",
                &[&dates, &codes, &rates, &published],
            )
            .await?;
        applied.inserted += row.get::<_, i64>(0) as u64;
        applied.updated += row.get::<_, i64>(1) as u64;
    }
    tx.commit().await?;
    Ok(applied)
}

/// The first and last `created_date` of the three facts (the dates their
/// amounts convert at), or `None` when they are empty.
pub async fn fact_date_range(client: &Client) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let row = client
        .query_one(
            "SELECT to_char(min(d), 'YYYY-MM-DD'), to_char(max(d), 'YYYY-MM-DD') FROM (
                 SELECT created_date AS d FROM fact_sales_order
                 UNION ALL SELECT created_date FROM fact_purchase_order
                 UNION ALL SELECT created_date FROM fact_payment
             ) u",
            &[],
        )
        .await?;
    let day = |i: usize| -> Option<NaiveDate> {
        let text: Option<String> = row.get(i);
        NaiveDate::parse_from_str(text.as_deref()?, "%Y-%m-%d").ok()
    };
    Ok(day(0).zip(day(1)))
}
