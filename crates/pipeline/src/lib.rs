//! Tributary's stages, by source, over one stage runner.
//!
//! The flow is sources → raw lake → model → warehouse, and the modules follow
//! it: each source is a room ([`totesys`], [`markets`], [`fx`]) holding its own
//! ingest, transform and load stages. What every stage shares lives once:
//! [`stage`] names a run, logs and alerts its failure with the stage's
//! advice; [`metrics`] turns any stage report into figures; [`config`]
//! parses every setting. Side effects that differ between local runs and AWS
//! sit behind small traits ([`alerts::Alerts`], [`metrics::Metrics`],
//! [`catalog::Catalog`], [`markets::stream::TradeStream`]).
//!
//! A new source is a new room: a module with its stages, its manifest logs
//! (`tributary_lake::Log`) and its place in [`run`].

pub mod alert_gate;
pub mod alerts;
pub mod catalog;
pub mod config;
pub mod db;
mod error;
pub mod fx;
pub mod gz;
pub mod lakehouse;
pub mod markets;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod source_tables;
pub mod sources;
pub mod stage;
pub mod status;
pub mod totesys;

pub use config::Settings;
pub use error::{Error, Result};

/// Caps glibc's malloc at two arenas; call it first thing in `main`, before
/// threads start. By default glibc gives threads up to eight arenas per core,
/// and a long streaming run on two cores leaves freed memory spread over
/// them: a 10M-order transform peaked at 273 MB with the default and 219 MB
/// with two, no slower (`scripts/bench-scale.sh`). No effect off glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other
    // threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
