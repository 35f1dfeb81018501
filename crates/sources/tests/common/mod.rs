//! What the source tests share (each test binary uses part of it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tributary_sources::config::SourceFile;

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example source file `examples/sources/<name>.toml`, reading every
/// table every run.
pub(crate) fn example(name: &str) -> SourceFile {
    tributary_testkit::example_source(name)
}
