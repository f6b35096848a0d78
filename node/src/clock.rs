//! [E] The wall clock, read in one place: unix time in milliseconds, for versions of the own
//! view and for when an operator acted. Pure code receives it as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
