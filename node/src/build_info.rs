//! [P] What this binary was built from, for `sparrow --version` and the `sparrow_build_info`
//! metric. `build.rs` sets the commit (`unknown` when built from a tarball without git
//! and without `$SPARROW_COMMIT`) and the build date (`$SOURCE_DATE_EPOCH` if set).

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit built, 12 hex digits, or `unknown`.
pub const COMMIT: &str = env!("SPARROW_COMMIT");
/// The build date, UTC, `YYYY-MM-DD`.
pub const BUILD_DATE: &str = env!("SPARROW_BUILD_DATE");
/// What `sparrow --version` prints after the name: `0.1.0 (commit 0123456789ab, built
/// 2026-12-02)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SPARROW_COMMIT"),
    ", built ",
    env!("SPARROW_BUILD_DATE"),
    ")"
);
