//! [E] Probes of the POP's own services: TCP connect, HTTP(S) status (and body), and exec
//! with Nagios plugin or plain exit codes (`ExitCodes`). Every probe runs under a timeout; a probe that hangs fails.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

use super::http::HttpClient;
use super::spec::{ExitCodes, MAX_BODY, ProbeKind};
use super::state::Outcome;

/// Most bytes of plugin output read.
const MAX_READ: usize = 64 * 1024;

/// A probe ready to run: what it checks, with its HTTP client (and TLS settings) built once.
pub struct Prober {
    kind: ProbeKind,
    http: Option<HttpClient>,
}

impl Prober {
    /// Prepares checks of `kind`.
    pub fn new(kind: &ProbeKind) -> Self {
        let http = match kind {
            ProbeKind::Http { target, .. } => Some(HttpClient::new(target)),
            ProbeKind::Tcp { .. } | ProbeKind::Exec { .. } => None,
        };
        Self {
            kind: kind.clone(),
            http,
        }
    }

    /// Runs one check, giving up after `timeout`.
    pub async fn check(&self, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, self.check_inner()).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(format!("no result within {} ms", timeout.as_millis())),
        }
    }

    async fn check_inner(&self) -> Outcome {
        match (&self.kind, &self.http) {
            (ProbeKind::Tcp { target }, _) => match TcpStream::connect(target.as_str()).await {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Failed(format!("connect {target}: {e}")),
            },
            (
                ProbeKind::Http {
                    expect_status,
                    body_contains,
                    ..
                },
                Some(client),
            ) => http(client, *expect_status, body_contains.as_deref()).await,
            (ProbeKind::Exec { argv, exit_codes }, _) => exec(argv, *exit_codes).await,
            (ProbeKind::Http { .. }, None) => Outcome::Failed("no HTTP client".to_owned()),
        }
    }
}

/// Runs one check of `kind`, giving up after `timeout` (a [`Prober`] used once).
pub async fn check(kind: &ProbeKind, timeout: Duration) -> Outcome {
    Prober::new(kind).check(timeout).await
}

async fn http(client: &HttpClient, expect_status: u16, body_contains: Option<&str>) -> Outcome {
    let fetched = match client.get(body_contains.is_some()).await {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(e),
    };
    if fetched.status != expect_status {
        return Outcome::Failed(format!(
            "status {}, expected {expect_status}",
            fetched.status
        ));
    }
    match body_contains {
        Some(want) if !String::from_utf8_lossy(&fetched.body).contains(want) => {
            let within = if fetched.truncated {
                format!(" (in its first {MAX_BODY} bytes)")
            } else {
                String::new()
            };
            Outcome::Failed(format!("body does not contain {want:?}{within}"))
        }
        _ => Outcome::Ok,
    }
}

/// Runs a command; returns its exit code (None: killed by a signal) and first 64 KiB of
/// standard output.
pub(crate) async fn run_command(argv: &[String]) -> Result<(Option<i32>, String), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".to_owned());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_READ as u64).read_to_end(&mut output).await;
    }
    let status = child.wait().await.map_err(|e| format!("{program}: {e}"))?;
    Ok((status.code(), String::from_utf8_lossy(&output).into_owned()))
}

async fn exec(argv: &[String], exit_codes: ExitCodes) -> Outcome {
    let (code, output) = match run_command(argv).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e),
    };
    // Plugins print one status line first.
    let message = output.lines().next().unwrap_or("").trim();
    exit_codes.outcome(code, message, &argv[0])
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;
    use tokio::net::TcpListener;

    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn sh(script: &str) -> ProbeKind {
        ProbeKind::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            exit_codes: ExitCodes::Nagios,
        }
    }

    #[tokio::test]
    async fn exec_maps_nagios_exit_codes() {
        assert_eq!(check(&sh("echo fine; exit 0"), T).await, Outcome::Ok);
        assert_eq!(
            check(&sh("echo 'DISK WARNING - 85% used'; exit 1"), T).await,
            Outcome::Warning("DISK WARNING - 85% used".into())
        );
        assert_eq!(
            check(&sh("echo 'HTTP CRITICAL'; exit 2"), T).await,
            Outcome::Failed("CRITICAL: HTTP CRITICAL".into())
        );
        assert_eq!(
            check(&sh("echo what; exit 3"), T).await,
            Outcome::Failed("UNKNOWN (exit 3): what".into())
        );
        let missing = ProbeKind::Exec {
            argv: vec!["/nonexistent/check".into()],
            exit_codes: ExitCodes::Nagios,
        };
        assert!(matches!(check(&missing, T).await, Outcome::Failed(m) if m.contains("cannot run")));
    }

    #[tokio::test]
    async fn plain_exit_codes_make_false_down_and_true_up() {
        let plain = |program: &str| ProbeKind::Exec {
            argv: vec![program.into()],
            exit_codes: ExitCodes::Plain,
        };
        assert_eq!(check(&plain("true"), T).await, Outcome::Ok);
        assert_eq!(
            check(&plain("false"), T).await,
            Outcome::Failed("false exited with 1".into())
        );
        let nagios_false = ProbeKind::Exec {
            argv: vec!["false".into()],
            exit_codes: ExitCodes::Nagios,
        };
        assert_eq!(
            check(&nagios_false, T).await,
            Outcome::Warning(String::new())
        );
    }

    #[tokio::test]
    async fn a_hanging_probe_fails_at_its_timeout() {
        let started = std::time::Instant::now();
        let outcome = check(&sh("sleep 30"), Duration::from_millis(200)).await;
        assert_eq!(outcome, Outcome::Failed("no result within 200 ms".into()));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn tcp_connects_or_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        assert_eq!(
            check(
                &ProbeKind::Tcp {
                    target: target.clone()
                },
                T
            )
            .await,
            Outcome::Ok
        );
        drop(listener);
        assert!(matches!(
            check(&ProbeKind::Tcp { target }, T).await,
            Outcome::Failed(m) if m.contains("connect")
        ));
    }

    /// A one-shot HTTP server answering `response` to every connection.
    async fn http_server(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    fn http(authority: &str, status: u16, body: Option<&str>) -> ProbeKind {
        ProbeKind::Http {
            target: crate::health::HttpTarget {
                url: format!("http://{authority}/health"),
                authority: authority.into(),
                host: authority.into(),
                path: "/health".into(),
                tls: None,
            },
            expect_status: status,
            body_contains: body.map(Into::into),
        }
    }

    #[tokio::test]
    async fn http_checks_status_and_body() {
        let ok = http_server("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nstatus:up").await;
        assert_eq!(check(&http(&ok, 200, None), T).await, Outcome::Ok);
        assert_eq!(
            check(&http(&ok, 200, Some("status:up")), T).await,
            Outcome::Ok
        );
        assert_eq!(
            check(&http(&ok, 200, Some("status:down")), T).await,
            Outcome::Failed("body does not contain \"status:down\"".into())
        );
        assert_eq!(
            check(&http(&ok, 204, None), T).await,
            Outcome::Failed("status 200, expected 204".into())
        );
        let err = http_server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(
            check(&http(&err, 200, None), T).await,
            Outcome::Failed("status 503, expected 200".into())
        );
        let junk = http_server("SSH-2.0-OpenSSH\r\n").await;
        assert!(matches!(
            check(&http(&junk, 200, None), T).await,
            Outcome::Failed(m) if m.starts_with(&format!("GET http://{junk}/health: "))
        ));
    }

    #[tokio::test]
    async fn http_reads_chunked_bodies_and_caps_long_ones() {
        // The old hand-written client matched against the raw chunk framing; the word
        // here is split across two chunks.
        let chunked = http_server(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nstatus:\r\n2\r\nup\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(
            check(&http(&chunked, 200, Some("status:up")), T).await,
            Outcome::Ok
        );
        let long: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}marker",
                MAX_BODY + 6,
                "x".repeat(MAX_BODY)
            )
            .into_boxed_str(),
        );
        let long = http_server(long).await;
        assert_eq!(
            check(&http(&long, 200, Some("marker")), T).await,
            Outcome::Failed(format!(
                "body does not contain \"marker\" (in its first {MAX_BODY} bytes)"
            ))
        );
        assert_eq!(check(&http(&long, 200, Some("xxx")), T).await, Outcome::Ok);
    }
}
