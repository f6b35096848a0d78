//! [P] Deterministic pseudo-random numbers for unit tests: seeded, so a failure replays, and
//! with no dependency.

/// Xorshift64 from `seed` (which must not be zero): the same sequence on every run.
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    debug_assert!(seed != 0, "xorshift stays at zero from a zero seed");
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
