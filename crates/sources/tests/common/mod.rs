//! What the source tests share (each test binary uses part of it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tributary_sources::config::SourceFile;

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example source file `examples/sources/<name>.toml`, reading every
/// table every run: runs right after a change must see it, and statistics
/// may publish it a second late (the skip has its own test).
pub(crate) fn example(name: &str) -> SourceFile {
    let mut file = SourceFile::read(&repo().join(format!("examples/sources/{name}.toml")))
        .expect("the example source file reads");
    file.trust_statistics = false;
    file
}
