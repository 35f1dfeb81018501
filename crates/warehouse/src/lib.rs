//! The warehouse star schema (fact_sales_order, fact_purchase_order,
//! fact_payment and 8 dimensions including dim_date): its definitions, the
//! raw → star transforms, and the loader.
//!
//! - [`tables`]: the tables (the star schema and the dimensions' histories)
//!   as typed definitions.
//! - [`transform`]: raw totesys rows → dimensions and facts, with the
//!   reference state dimensions are joined against, and quarantine.
//! - [`load`]: processed Parquet → PostgreSQL, one transaction per manifest.
//! - [`aggregates`]: dashboard aggregates, recomputed for the days a load touches.
//! - [`fx`]: exchange rates (`fact_exchange_rate`) and the facts' amounts
//!   in the reporting currency (`*_reporting` views, `exchange_rate_gaps`).

pub mod aggregates;
pub mod calendar;
pub mod copy_in;
pub mod currency;
mod error;
pub mod fx;
pub mod load;
pub mod markets;
pub mod tables;
pub mod transform;

pub use error::{Error, Result};
pub use tables::{Kind, WAREHOUSE_TABLES, WType, WarehouseTable};

/// The warehouse DDL, idempotent (`CREATE … IF NOT EXISTS`).
pub const WAREHOUSE_DDL: &str = include_str!("warehouse.sql");

/// Runs an idempotent `ddl` unless the warehouse records this very text as
/// applied under `name` (`tributary.ddl_applied`), or always with `force`.
///
/// Loads call it every minute, and the DDL is not free to run: `CREATE
/// INDEX IF NOT EXISTS` takes a SHARE lock on its table before it finds the
/// index there, which waits for autovacuum until the deadlock timeout
/// (a second) cancels the vacuum, so a large fact table would seldom finish
/// one. A new Tributary version (a changed text) applies it once.
pub async fn apply_ddl(
    client: &tokio_postgres::Client,
    name: &str,
    ddl: &str,
    force: bool,
) -> Result<()> {
    let digest = tributary_lake::sha256_hex(ddl.as_bytes());
    if !force {
        let recorded: bool = client
            .query_one(
                "SELECT to_regclass('tributary.ddl_applied') IS NOT NULL",
                &[],
            )
            .await?
            .get(0);
        if recorded {
            let applied: Option<String> = client
                .query_opt(
                    "SELECT digest FROM tributary.ddl_applied WHERE name = $1",
                    &[&name],
                )
                .await?
                .map(|row| row.get(0));
            if applied.as_deref() == Some(digest.as_str()) {
                return Ok(());
            }
        }
    }
    client.batch_execute(ddl).await?;
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS tributary; \
             CREATE TABLE IF NOT EXISTS tributary.ddl_applied ( \
               name text PRIMARY KEY, digest text NOT NULL, \
               applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    client
        .execute(
            "INSERT INTO tributary.ddl_applied (name, digest) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, applied_at = now()",
            &[&name, &digest],
        )
        .await?;
    Ok(())
}
