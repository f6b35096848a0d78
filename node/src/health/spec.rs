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
    /// The service (index into `Config::geo`) it checks; `None`: the whole POP.
    pub service: Option<usize>,
}

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// A TCP connection to `HOST:PORT` succeeds.
    Tcp {
        /// `HOST:PORT`.
        target: String,
    },
    /// `GET` over HTTP/1.1 (or HTTPS) returns `expect_status` (and a body containing
    /// `body_contains`).
    Http {
        /// Where to send the request.
        target: HttpTarget,
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

/// Where an HTTP(S) probe sends its `GET`, and which servers it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// The URL as configured (for messages).
    pub url: String,
    /// `HOST:PORT` to connect to.
    pub authority: String,
    /// Host header: the URL's authority (without a default port), or the `host` override.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// For `https://` URLs: how the server's certificate is checked. `None`: plain HTTP.
    pub tls: Option<HttpsTrust>,
}

/// How an HTTPS probe checks the server it talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsTrust {
    /// Name sent in SNI and checked against the certificate (a DNS name or an IP address):
    /// the URL's host, or the `host` override without its port.
    pub server_name: String,
    /// DER certificates of the private CA from the probe's `ca` file; `None` trusts the
    /// system's roots.
    pub ca: Option<Vec<Vec<u8>>>,
}

/// Most bytes of an HTTP body a probe reads: enough for any health page or stats
/// document, small enough that a misconfigured URL cannot make the node buffer a download.
pub const MAX_BODY: usize = 64 * 1024;

/// How a POP's load (0.0 idle to 1.0 full) is measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadKind {
    /// A command whose output starts with the load.
    Exec {
        /// Program and arguments (no shell).
        argv: Vec<String>,
    },
    /// A JSON document over HTTP(S); `field` is a dotted path to the number.
    Http {
        /// Where to send the request.
        target: HttpTarget,
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
