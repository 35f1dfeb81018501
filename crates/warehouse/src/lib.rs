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
/// applied under `name` (`tributary.ddl_applied`) and every relation of
/// `expected` (schema-qualified where not in `public`) is there; always
/// with `force`.
///
/// Loads call it every minute, and the DDL is not free to run: `CREATE
/// INDEX IF NOT EXISTS` takes a SHARE lock on its table before it finds the
/// index there, which waits for autovacuum until the deadlock timeout
/// (a second) cancels the vacuum, so a large fact table would seldom finish
/// one. A new Tributary version (a changed text) applies it once; a table
/// dropped by hand brings it back. The DDL and its record are one
/// transaction under an advisory lock, so concurrent loaders apply it one
/// after the other.
pub async fn apply_ddl(
    client: &tokio_postgres::Client,
    name: &str,
    ddl: &str,
    expected: &[&str],
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
            // `to_regclass` takes no lock.
            let applied: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM tributary.ddl_applied WHERE name = $1 AND digest = $2) \
                       AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) r WHERE to_regclass(r) IS NULL)",
                    &[&name, &digest, &expected],
                )
                .await?
                .get(0);
            if applied {
                return Ok(());
            }
        }
    }
    // One simple query: one implicit transaction, rolled back whole on an
    // error. `name` comes from this crate and the digest is hex.
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(hashtext('tributary.ddl'));\n{ddl}\n\
             CREATE SCHEMA IF NOT EXISTS tributary;\n\
             CREATE TABLE IF NOT EXISTS tributary.ddl_applied ( \
               name text PRIMARY KEY, digest text NOT NULL, \
               applied_at timestamptz NOT NULL DEFAULT now());\n\
             INSERT INTO tributary.ddl_applied (name, digest) VALUES ('{name}', '{digest}') \
             ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, applied_at = now();"
        ))
        .await?;
    Ok(())
}

/// The relations [`load::init`] must find in place: every warehouse table
/// and the load log.
pub fn warehouse_relations() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = WAREHOUSE_TABLES.iter().map(|t| t.name).collect();
    names.push("tributary.load_log");
    names
}
