//! Support for the end-to-end tests: everything of [`tributary_testkit`]
//! (databases, snapshots, the independent Parquet reader, faulty stores, a
//! wired pipeline), plus the moto_server helpers in [`aws`], which are the
//! only part that needs the AWS SDK.

pub mod aws;

pub use tributary_testkit::*;
