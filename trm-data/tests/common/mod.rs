//! Shared helpers of trm-data's integration tests.

use std::path::PathBuf;

/// `relative` inside the shared folder ([`trm_data::layout::shared_dir`]: `$TRM_SHARED`, else
/// `../shared` beside the repository), e.g. `data/maze-hard`. Panics, failing the test, when it
/// is missing: the tests that call this need it.
pub fn shared(relative: &str) -> PathBuf {
    let path = trm_data::layout::shared_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: set TRM_SHARED to the shared folder (the one holding data/ and \
         reference-fixtures/; by default ../shared beside the repository)",
        path.display()
    );
    path
}
