//! The reference state as files: one Parquet file per reference table (its
//! current rows), one per reference table's versions, and a serialized
//! roaring bitmap of transaction ids.

use bytes::Bytes;
use roaring::RoaringBitmap;
use tributary_lake::parquet::{decode, encode};
use tributary_totesys::TableDef;

use super::history::{seed_versions, versions_schema};
use super::reference::{REFERENCE_TABLES, ReferenceState};
use crate::{Error, Result};

/// The state part holding transaction ids.
pub(crate) const TRANSACTION_IDS: &str = "transaction_ids";

/// The prefix of the state parts holding every version of a reference table.
const VERSIONS_PREFIX: &str = "versions_";

/// Encodes the state as `(part name, bytes)`.
pub fn encode_state(state: &ReferenceState) -> Result<Vec<(String, Bytes)>> {
    let mut parts = Vec::new();
    for name in REFERENCE_TABLES {
        if let Some(batch) = state.table(name) {
            parts.push((
                name.to_string(),
                encode(batch.schema(), std::slice::from_ref(batch))?,
            ));
        }
    }
    for name in REFERENCE_TABLES {
        if let Some(batch) = state.versions(name) {
            parts.push((
                format!("{VERSIONS_PREFIX}{name}"),
                encode(batch.schema(), std::slice::from_ref(batch))?,
            ));
        }
    }
    let mut ids = Vec::new();
    state
        .transactions()
        .serialize_into(&mut ids)
        .map_err(|e| Error::CorruptState {
            key: TRANSACTION_IDS.to_string(),
            reason: e.to_string(),
        })?;
    parts.push((TRANSACTION_IDS.to_string(), Bytes::from(ids)));
    Ok(parts)
}

/// Rebuilds the state from parts read back (`key` names each for errors).
pub fn decode_state(parts: Vec<(String, String, Bytes)>) -> Result<ReferenceState> {
    let mut state = ReferenceState::default();
    let mut with_versions = false;
    for (name, key, bytes) in parts {
        let corrupt = |reason: String| Error::CorruptState {
            key: key.clone(),
            reason,
        };
        if name == TRANSACTION_IDS {
            let ids =
                RoaringBitmap::deserialize_from(&bytes[..]).map_err(|e| corrupt(e.to_string()))?;
            state.set_transactions(ids);
            continue;
        }
        if let Some(table) = name.strip_prefix(VERSIONS_PREFIX) {
            let def = REFERENCE_TABLES
                .iter()
                .find(|t| **t == table)
                .and_then(|t| TableDef::by_name(t))
                .ok_or_else(|| corrupt(format!("unknown state part {name:?}")))?;
            let schema = versions_schema(def);
            let (found, batches) = decode(bytes).map_err(|e| corrupt(e.to_string()))?;
            if found.fields() != schema.fields() {
                return Err(corrupt(format!("schema differs from {name}")));
            }
            let batch = arrow_select::concat::concat_batches(&schema, &batches)?;
            state.set_versions(def.name, batch);
            with_versions = true;
            continue;
        }
        let table = REFERENCE_TABLES
            .iter()
            .find(|t| **t == name)
            .and_then(|t| TableDef::by_name(t))
            .ok_or_else(|| corrupt(format!("unknown state part {name:?}")))?;
        let (schema, batches) = decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        if schema.fields() != table.arrow_schema().fields() {
            return Err(corrupt(format!("schema differs from {}", table.name)));
        }
        let batch = arrow_select::concat::concat_batches(&table.arrow_schema(), &batches)?;
        state.set_table(table.name, batch);
    }
    if !with_versions {
        // Written before histories were kept: start them from what it has.
        seed_versions(&mut state)?;
    }
    Ok(state)
}
