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
