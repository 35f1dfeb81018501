//! Tributary's stages and their settings.
//!
//! Each stage is one entry function called alike by the CLI and the Lambda
//! functions: [`ingest::ingest`] today; transform and load join it. Side
//! effects that differ between local runs and AWS sit behind small traits
//! ([`alerts::Alerts`]).

pub mod alerts;
pub mod catalog;
pub mod db;
mod error;
pub mod gz;
pub mod ingest;
pub mod load;
pub mod markets_history;
pub mod markets_load;
pub mod markets_poll;
pub mod markets_run;
pub mod markets_transform;
pub mod metrics;
pub mod reconcile;
pub mod run;
pub mod settings;
pub mod status;
pub mod stream;
pub mod stream_sink;
pub mod transform;

pub use error::{Error, Result};
pub use settings::Settings;
