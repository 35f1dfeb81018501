//! The warehouse star schema (fact_sales_order, fact_purchase_order,
//! fact_payment and their dimensions), its transforms and its loader.
//!
//! Filled in by the transform/load work; the crate exists now so the
//! workspace layout and dependency rules are in place from the start.
