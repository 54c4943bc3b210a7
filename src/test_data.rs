//! Where the test data lives: `$EDGE_TEST_DATA`, default `<repo>/target/test-data`,
//! filled by `scripts/fetch-test-data.sh`. The one place unit and integration tests
//! find it, so that a test whose data is missing fails and says how to fetch it
//! instead of passing without checking anything.

use std::path::{Path, PathBuf};

/// The test-data folder (it may not exist yet).
pub fn dir() -> PathBuf {
    std::env::var_os("EDGE_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data"))
}

/// A file or folder of the test data. Panics, naming the fix, when it is missing: for
/// tests only.
pub fn require(rel: &str) -> PathBuf {
    let p = dir().join(rel);
    assert!(
        p.exists(),
        "test data {} is missing: run scripts/fetch-test-data.sh first (or set \
         EDGE_TEST_DATA to the folder that holds it)",
        p.display()
    );
    p
}
