//! [P] What a probe is: the validated form of a `[[node.probe]]` table.

use std::time::Duration;

use super::state::Outcome;

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
    /// A command, its exit code read as `exit_codes` says.
    Exec {
        /// Program and arguments (no shell).
        argv: Vec<String>,
        /// How the exit code is read.
        exit_codes: ExitCodes,
    },
}

/// How an exec probe's exit code is read (`exit_codes` in `[[node.probe]]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitCodes {
    /// Nagios plugins: 0 OK, 1 WARNING (still up, logged), 2 CRITICAL, else UNKNOWN (down).
    /// The default, so that any monitoring plugin works unchanged.
    #[default]
    Nagios,
    /// 0 up, anything else down: gdnsd's extmon, most health checkers, `true`/`false`.
    Plain,
}

impl ExitCodes {
    /// The mode named `name` (as written in the config).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "nagios" => Some(Self::Nagios),
            "plain" => Some(Self::Plain),
            _ => None,
        }
    }

    /// The outcome of a command that exited with `code` (`None`: killed by a signal) after
    /// printing `message` as its first line; `program` names it in messages.
    pub fn outcome(self, code: Option<i32>, message: &str, program: &str) -> Outcome {
        let Some(code) = code else {
            return Outcome::Failed(format!("{program} killed by a signal"));
        };
        match (self, code) {
            (_, 0) => Outcome::Ok,
            (Self::Nagios, 1) => Outcome::Warning(message.to_owned()),
            (Self::Nagios, 2) => Outcome::Failed(format!("CRITICAL: {message}")),
            (Self::Nagios, code) => Outcome::Failed(format!("UNKNOWN (exit {code}): {message}")),
            (Self::Plain, code) if message.is_empty() => {
                Outcome::Failed(format!("{program} exited with {code}"))
            }
            (Self::Plain, code) => Outcome::Failed(format!("exit {code}: {message}")),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::{ExitCodes, Outcome};

    #[test]
    fn exit_codes_are_read_as_the_probe_says() {
        let nagios = |code| ExitCodes::Nagios.outcome(code, "disk 85%", "check_disk");
        let plain = |code| ExitCodes::Plain.outcome(code, "", "false");
        assert_eq!(nagios(Some(0)), Outcome::Ok);
        assert_eq!(nagios(Some(1)), Outcome::Warning("disk 85%".into()));
        assert_eq!(
            nagios(Some(2)),
            Outcome::Failed("CRITICAL: disk 85%".into())
        );
        assert_eq!(
            nagios(Some(3)),
            Outcome::Failed("UNKNOWN (exit 3): disk 85%".into())
        );
        assert_eq!(
            nagios(None),
            Outcome::Failed("check_disk killed by a signal".into())
        );
        assert_eq!(plain(Some(0)), Outcome::Ok);
        // `false`: up under Nagios' reading (WARNING), down under the plain one.
        assert_eq!(
            plain(Some(1)),
            Outcome::Failed("false exited with 1".into())
        );
        assert_eq!(
            plain(Some(2)),
            Outcome::Failed("false exited with 2".into())
        );
        assert_eq!(
            plain(Some(255)),
            Outcome::Failed("false exited with 255".into())
        );
        assert_eq!(
            ExitCodes::Plain.outcome(Some(1), "gateway down", "check"),
            Outcome::Failed("exit 1: gateway down".into())
        );
        assert_eq!(
            plain(None),
            Outcome::Failed("false killed by a signal".into())
        );
        assert_eq!(ExitCodes::default(), ExitCodes::Nagios);
        assert_eq!(ExitCodes::from_name("nagios"), Some(ExitCodes::Nagios));
        assert_eq!(ExitCodes::from_name("plain"), Some(ExitCodes::Plain));
        assert_eq!(ExitCodes::from_name("Plain"), None);
    }
}
