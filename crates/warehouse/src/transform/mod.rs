//! Raw totesys rows → the star schema.
//!
//! [`apply_reference_changes`] merges one run's changes to the small source
//! tables into the [`ReferenceState`] and emits every dimension row they
//! reach; [`FactTransformer`] turns raw order and payment rows into facts,
//! checking each reference against [`known_keys`]; [`dim_date_batch`] covers
//! every date the facts refer to; [`record_versions`] and
//! [`history_changes`] keep every version of the small source tables and
//! write the type 2 histories of the dimensions. Refused rows come back as [`Quarantined`].

mod columns;
mod facts;
mod history;
mod quarantine;
mod reference;
mod state_files;
mod versions;

pub use facts::{FACT_SOURCES, FactBatch, FactTransformer, dim_date_batch};
pub use history::{CAPTURED_AT, history_changes, record_versions, seed_versions, versions_schema};
pub use quarantine::{Quarantined, render_row, to_json_lines};
pub use reference::{
    DimensionChanges, KnownKeys, REFERENCE_TABLES, ReferenceState, apply_reference_changes,
    key_bits, known_keys, transactions_to_emit,
};
pub use state_files::{decode_state, encode_state};
pub use versions::{
    Version, bucket_of, decode_versions, encode_versions, fact_version_columns, fact_versions,
    raw_versions,
};
