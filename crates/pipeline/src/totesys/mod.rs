//! The totesys room: an operational PostgreSQL database extracted
//! incrementally into the raw lake ([`ingest`]), remodelled into the star
//! schema ([`transform`]), applied to the warehouse ([`load`]), and checked
//! layer against layer ([`reconcile`]). The transform's [`versions`] index
//! keeps each fact version in the processed lake once.

pub mod ingest;
pub mod load;
pub mod reconcile;
pub mod requests;
pub mod source;
pub mod transform;
pub mod versions;
