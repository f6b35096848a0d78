//! [P] What a probe is: the validated form of a `[[node.probe]]` table.

use std::time::Duration;

/// Time between checks of a probe that does not set one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Time a check may take when the probe does not say (well under the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Successes in a row that bring a probe back up (haproxy's default).
pub const DEFAULT_RISE: u32 = 2;
/// Failures in a row that take a probe down (haproxy's default).
pub const DEFAULT_FALL: u32 = 3;

/// One configured probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Name used in logs.
    pub name: String,
    /// What it checks.
    pub kind: ProbeKind,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes in a row that bring a down probe up.
    pub rise: u32,
    /// Failures in a row that take an up probe down.
    pub fall: u32,
}

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connection to `HOST:PORT` succeeds.
    Tcp {
        /// `HOST:PORT`.
        target: String,
    },
    /// `GET` over HTTP/1.1 returns `expect_status` (and a body containing `body_contains`).
    Http {
        /// `HOST:PORT` to connect to.
        authority: String,
        /// Host header (the authority without a default port).
        host: String,
        /// Path and query.
        path: String,
        /// Wanted status code.
        expect_status: u16,
        /// Text the body must contain.
        body_contains: Option<String>,
    },
    /// A command in Nagios plugin style: exit 0 OK, 1 WARNING, 2 CRITICAL, else UNKNOWN.
    Exec {
        /// Program and arguments (no shell).
        argv: Vec<String>,
    },
}

/// How a POP's load (0.0 idle to 1.0 full) is measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadKind {
    /// A command whose output starts with the load.
    Exec {
        /// Program and arguments (no shell).
        argv: Vec<String>,
    },
    /// A JSON document over HTTP; `field` is a dotted path to the number.
    Http {
        /// `HOST:PORT` to connect to.
        authority: String,
        /// Host header.
        host: String,
        /// Path and query.
        path: String,
        /// Dotted path of the number in the JSON document (`stats.load`).
        field: String,
    },
    /// A file whose content starts with the load.
    File {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// A configured load probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadProbe {
    /// What it reads.
    pub kind: LoadKind,
    /// Time between readings.
    pub interval: Duration,
    /// Time a reading may take.
    pub timeout: Duration,
}

/// Load above which a POP is skipped while others are below it.
pub const DEFAULT_HIGH_WATER: f32 = 0.9;
