//! [E] The `sparrow` command line.

pub mod generate;
pub mod render;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sparrow_proto::api::{Request, Response};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::{self, ConfigError};
use crate::snapshot::Snapshot;

/// Exit code: the run failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the configuration (or the command line) was refused.
pub const EXIT_CONFIG: u8 = 2;

/// Sparrow: geo-DNS that answers with the POP nearest the client in BGP AS hops.
#[derive(Debug, Parser)]
#[command(name = "sparrow", version = crate::build_info::LONG_VERSION, about)]
pub struct Cli {
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less logging (warnings and errors only).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log lines as text (default) or as JSON objects, one per line, for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`, `span`s.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Node {
        /// The node's config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Serve on these addresses instead of the config's `node.listen` (port 0: any free
        /// port, the same for UDP and TCP; the log says which).
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Take over the sockets of the node running with this config (its API socket),
        /// which exits once this one serves: a binary upgrade without a lost query.
        #[arg(long, conflicts_with = "listen")]
        take_over: bool,
    },
    /// Run a three-node demo cluster (ams, nyc, syd) on 127.0.0.1; needs no files.
    Demo {
        /// DNS port of the first node; the others take the next two (0: any free ports).
        #[arg(long, default_value_t = 5301)]
        port: u16,
        /// API socket of the ams node (the others sit beside it); default: the default path.
        #[arg(long)]
        api_socket: Option<PathBuf>,
    },
    /// Check a config file and print what it holds.
    Check {
        /// The config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Print JSON (also for a refused config, beside the message on standard error).
        #[arg(long)]
        json: bool,
    },
    /// Create the cluster's PKI: a CA, node and operator certificates.
    Cert {
        /// What to create.
        #[command(subcommand)]
        what: CertCommand,
    },
    /// Show the running node's view of the cluster.
    Status {
        /// Which node to ask, and how.
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop handing out a POP, cluster-wide (with `--service`: for that service only).
    Drain {
        /// The POP.
        pop: String,
        /// Drain only this service at the POP (a geo name, `api`).
        #[arg(long)]
        service: Option<String>,
        /// Which node to ask, and how.
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Hand out a drained POP again, cluster-wide (with `--service`: that service).
    Undrain {
        /// The POP.
        pop: String,
        /// Undrain only this service at the POP.
        #[arg(long)]
        service: Option<String>,
        /// Which node to ask, and how.
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Make the running node re-read its config file (and every file it names) and apply
    /// it without dropping a query; a refused config leaves the running one in place and
    /// exits 2 with `file:line:col: reason`. The same as SIGHUP, but reports the outcome.
    Reload {
        /// Which node to ask, and how.
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Explain which POP a client gets and why: from the running node (default), or from a
    /// config file with `--config` (the own POP's probes are then run once from here).
    Explain {
        /// Explain from this config file instead of asking the running node.
        #[arg(short, long, conflicts_with_all = ["socket", "remote"])]
        config: Option<PathBuf>,
        /// Which node to ask, and how.
        #[command(flatten)]
        target: Target,
        /// The geo name (default: the first one in the config).
        #[arg(short, long)]
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Client address or subnet (as sent in EDNS Client Subnet).
        client: String,
    },
    /// Print a shell completion script to standard output, e.g.
    /// `sparrow completions bash > /etc/bash_completion.d/sparrow`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page sparrow(1), or with `--dir` write it and one page per
    /// subcommand (`sparrow-node.1`, `sparrow-cert-ca.1`, ...) into a folder.
    Man {
        /// Write every page into this folder (made if missing) instead of printing one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The node an operator command talks to: the local node over its Unix socket (default), or
/// any node over QUIC with an operator certificate (`sparrow cert operator NAME`).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The local node's API socket (default: `$XDG_RUNTIME_DIR/sparrow/api.sock` or
    /// `/tmp/sparrow/api.sock`, else the systemd unit's `/run/sparrow/api.sock`).
    #[arg(long, conflicts_with = "remote", env = "SPARROW_SOCKET")]
    pub socket: Option<PathBuf>,
    /// A node's cluster address (`[cluster] listen`), reached over QUIC.
    #[arg(long, requires_all = ["cert", "key", "ca"], env = "SPARROW_REMOTE")]
    pub remote: Option<SocketAddr>,
    /// Operator certificate (names `sparrow://CLUSTER/operator/NAME`).
    #[arg(long, requires = "remote", env = "SPARROW_CERT")]
    pub cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "remote", env = "SPARROW_KEY")]
    pub key: Option<PathBuf>,
    /// The cluster CA.
    #[arg(long, requires = "remote", env = "SPARROW_CA")]
    pub ca: Option<PathBuf>,
}

/// `sparrow cert` subcommands. Files go to `--dir` as `NAME.pem` and `NAME.key` (mode 0600);
/// existing files are never overwritten.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create the cluster CA (`ca.pem`, `ca.key`).
    Ca {
        /// Cluster id, written into every certificate (lower-case letters, digits, `-`).
        #[arg(long)]
        cluster: String,
        /// Folder of the PKI files.
        #[arg(long, default_value = "sparrow-pki")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = crate::pki::DEFAULT_CA_DAYS)]
        days: u32,
    },
    /// Issue a node certificate (TLS server and client) signed by the CA in `--dir`.
    Node {
        /// Node (POP) name, e.g. `ams`.
        name: String,
        /// Extra DNS names or IP addresses the node is reached at.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Folder of the PKI files (holds `ca.pem` and `ca.key`).
        #[arg(long, default_value = "sparrow-pki")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = crate::pki::DEFAULT_CERT_DAYS)]
        days: u32,
    },
    /// Issue an operator certificate (TLS client only) signed by the CA in `--dir`.
    Operator {
        /// Operator name, e.g. `alice`.
        name: String,
        /// Folder of the PKI files (holds `ca.pem` and `ca.key`).
        #[arg(long, default_value = "sparrow-pki")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = crate::pki::DEFAULT_CERT_DAYS)]
        days: u32,
    },
}

fn cert(what: CertCommand) -> ExitCode {
    use crate::pki::{self, Identity, Role};
    let now = time::OffsetDateTime::now_utc();
    let (dir, stem, made) = match what {
        CertCommand::Ca { cluster, dir, days } => {
            let made = pki::new_ca(&cluster, now, days).map_err(anyhow::Error::from);
            (dir, "ca".to_owned(), made)
        }
        CertCommand::Node {
            name,
            sans,
            dir,
            days,
        } => {
            let made = issue_from(&dir, Role::Node, &name, &sans, days, now);
            (dir, name, made)
        }
        CertCommand::Operator { name, dir, days } => {
            let made = issue_from(&dir, Role::Operator, &name, &[], days, now);
            (dir, name, made)
        }
    };
    let pem = match made {
        Ok(pem) => pem,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A name that cannot be a certificate's is a refused command line.
            let refused = matches!(
                e.downcast_ref::<pki::PkiError>(),
                Some(pki::PkiError::BadName(_))
            );
            return ExitCode::from(if refused { EXIT_CONFIG } else { EXIT_FAILURE });
        }
    };
    match pki::write_pair(&dir, &stem, &pem) {
        Ok((cert, key)) => {
            let der = pki::cert_der(&pem.cert).ok();
            let id = der
                .as_deref()
                .and_then(|der| pki::identity_of(der).ok())
                .map_or_else(|| "cluster CA".to_owned(), |id: Identity| id.uri());
            let serial = der
                .as_deref()
                .and_then(|der| pki::serial_of(der).ok())
                .unwrap_or_default();
            println!(
                "wrote {} and {} ({id}, serial {serial})",
                cert.display(),
                key.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            // Existing files are never overwritten: the command is refused, not failed.
            let refused = e.kind() == std::io::ErrorKind::AlreadyExists;
            ExitCode::from(if refused { EXIT_CONFIG } else { EXIT_FAILURE })
        }
    }
}

fn issue_from(
    dir: &std::path::Path,
    role: crate::pki::Role,
    name: &str,
    sans: &[String],
    days: u32,
    now: time::OffsetDateTime,
) -> anyhow::Result<crate::pki::Pem> {
    use anyhow::Context as _;
    let ca = crate::pki::read_pair(dir, "ca").with_context(|| {
        format!(
            "cannot read the CA in {} (run `sparrow cert ca` first)",
            dir.display()
        )
    })?;
    let cluster = crate::pki::ca_cluster(&ca.cert)?;
    let id = crate::pki::Identity {
        cluster,
        role,
        name: name.to_owned(),
    };
    Ok(crate::pki::issue(&ca, &id, sans, now, days)?)
}

/// Runs the parsed command line and maps the outcome to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Node {
            config,
            listen,
            threads,
            take_over,
        } => run_node(&config, &listen, threads, take_over),
        Command::Check { config, json: true } => check_json(&config),
        Command::Check {
            config,
            json: false,
        } => with_config(&config, |loaded| {
            let c = &loaded.config;
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: ok: {} {} ({} static records), {} POPs, {} geo names, own POP {}",
                c.origin.display(),
                if c.zones.iter().count() > 1 {
                    "zones"
                } else {
                    "zone"
                },
                c.zones.describe(),
                c.zones.record_count(),
                c.pops.len(),
                c.geo.len(),
                c.own_pop().name
            );
            ExitCode::SUCCESS
        }),
        Command::Cert { what } => cert(what),
        Command::Demo { port, api_socket } => run_async(None, |shutdown| {
            crate::demo::run(
                port,
                api_socket.unwrap_or_else(crate::api::default_socket),
                shutdown,
            )
        }),
        Command::Status { target, json } => remote(target, Request::Status, json),
        Command::Drain {
            pop,
            service,
            target,
            json,
        } => remote(
            target,
            Request::SetAdmin {
                pop,
                drained: true,
                service,
            },
            json,
        ),
        Command::Undrain {
            pop,
            service,
            target,
            json,
        } => remote(
            target,
            Request::SetAdmin {
                pop,
                drained: false,
                service,
            },
            json,
        ),
        Command::Reload { target, json } => remote(target, Request::Reload, json),
        Command::Explain {
            config: Some(config),
            name,
            json,
            client,
            ..
        } => with_config(&config, |loaded| {
            let snap = with_own_probes(Snapshot::from_config(loaded.config));
            match crate::api::explain(&snap, &client, name.as_deref()) {
                Ok(e) => print_response(&Response::Explanation(e), json),
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }),
        Command::Explain {
            config: None,
            target,
            name,
            json,
            client,
        } => remote(target, Request::Explain { client, name }, json),
        Command::Completions { shell } => generate::completions(shell),
        Command::Man { dir } => generate::man(dir.as_deref()),
    }
}

/// `snap` with the own POP's probes (if it has any) run once from this machine: its health
/// and its services' as they are now, where `explain --config` would otherwise assume every
/// probe up.
fn with_own_probes(snap: Snapshot) -> Snapshot {
    let probes = &snap.config.node.probes;
    if probes.is_empty() {
        return snap;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("warning: cannot run the probes; explaining as if all were up");
        return snap;
    };
    let (healthy, down) = runtime.block_on(crate::health::check_once(probes));
    let own = snap.config.node.pop;
    let mut status = snap.pop_status.clone();
    status[own].healthy = healthy;
    let mut services = snap.services.to_vec();
    services[own].down = down;
    snap.with_status(status, snap.admin_by.clone(), snap.mode)
        .with_services(services)
}

/// `sparrow check --json`: what the config holds, or why it was refused, as one JSON object.
fn check_json(path: &std::path::Path) -> ExitCode {
    let (value, code) = match config::load(path) {
        Ok(loaded) => {
            let c = &loaded.config;
            let value = serde_json::json!({
                "config": c.origin.display().to_string(),
                "ok": true,
                "zone": c.zones.default_origin().to_string(),
                "zones": c.zones.iter().map(|z| z.origin_name().to_string()).collect::<Vec<_>>(),
                "static_records": c.zones.record_count(),
                "pops": c.pops.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                "own_pop": c.own_pop().name,
                "geo_names": c.geo.iter().map(|g| g.name.to_string()).collect::<Vec<_>>(),
                "clustered": c.cluster.is_some(),
                "warnings": loaded.warnings,
            });
            (value, ExitCode::SUCCESS)
        }
        Err(e) => {
            let code = config_refused(&e);
            let value = serde_json::json!({
                "config": path.display().to_string(),
                "ok": false,
                "error": e.to_string(),
            });
            (value, code)
        }
    };
    match serde_json::to_string_pretty(&value) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    code
}

fn with_config(path: &std::path::Path, f: impl FnOnce(config::Loaded) -> ExitCode) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => f(loaded),
        Err(e) => config_refused(&e),
    }
}

fn config_refused(e: &ConfigError) -> ExitCode {
    eprintln!("error: config refused: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// The API socket of a node started by the packaged systemd unit (its `RuntimeDirectory`
/// and the packaged config's `api_socket`).
pub const SYSTEMD_SOCKET: &str = "/run/sparrow/api.sock";

/// The socket the CLI talks to without `--socket`: the default path of a node run by this
/// user, or, when there is none, the packaged systemd unit's node.
fn default_client_socket() -> PathBuf {
    let own = crate::api::default_socket();
    if !own.exists() && std::path::Path::new(SYSTEMD_SOCKET).exists() {
        return PathBuf::from(SYSTEMD_SOCKET);
    }
    own
}

/// Sends `request` to the node `target` names and prints the answer.
fn remote(target: Target, request: Request, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(call(target, &request)) {
        Ok(response) => print_response(&response, json),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn call(target: Target, request: &Request) -> anyhow::Result<Response> {
    use anyhow::Context as _;
    let (Some(addr), Some(cert), Some(key), Some(ca)) =
        (target.remote, target.cert, target.key, target.ca)
    else {
        let path = target.socket.unwrap_or_else(default_client_socket);
        return crate::api::call(&path, request).await;
    };
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let cert_pem = read(&cert)?;
    let id = crate::pki::cert_der(&cert_pem)
        .ok()
        .and_then(|der| crate::pki::identity_of(&der).ok())
        .with_context(|| format!("{} names no sparrow:// identity", cert.display()))?;
    anyhow::ensure!(
        id.role == crate::pki::Role::Operator,
        "{} is a {} certificate; remote commands need an operator certificate",
        cert.display(),
        id.role.as_str()
    );
    let tls = crate::cluster::tls::ClusterTls::from_pem(
        &id.cluster,
        &read(&ca)?,
        &cert_pem,
        &read(&key)?,
    )?;
    let response = crate::api::call_quic(addr, &tls, request).await?;
    // A drain of another POP is applied by that POP's own node: go there, once, with the
    // same operator certificate.
    if let Response::Redirect {
        node: Some(node), ..
    } = &response
        && let Ok(next) = node.parse::<SocketAddr>()
        && next != addr
    {
        return crate::api::call_quic(next, &tls, request).await;
    }
    Ok(response)
}

fn print_response(response: &Response, json: bool) -> ExitCode {
    match response {
        Response::Error { message } | Response::Redirect { message, .. } => {
            // The node understood and refused: like a refused config, exit code 2.
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
        _ => {}
    }
    if json {
        let value = match response {
            Response::Status(s) => serde_json::to_string_pretty(s),
            Response::Explanation(e) => serde_json::to_string_pretty(e),
            other => serde_json::to_string_pretty(other),
        };
        match value {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
        return ExitCode::SUCCESS;
    }
    match response {
        Response::Status(s) => print!("{}", render::status(s)),
        Response::Explanation(e) => print!("{}", render::explanation(e)),
        Response::Done { message } => println!("{message}"),
        Response::AdminSet(report) => println!("{}", report.message),
        Response::Reloaded(report) => println!("{}", report.message),
        Response::Error { .. } | Response::Redirect { .. } => {}
    }
    ExitCode::SUCCESS
}

fn run_node(
    path: &std::path::Path,
    listen: &[SocketAddr],
    threads: Option<usize>,
    take_over: bool,
) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => return config_refused(&e),
    };
    run_async(threads, |shutdown| {
        crate::app::run(loaded, path, listen, take_over, shutdown)
    })
}

/// Runs `main` on a tokio runtime until it ends or a signal cancels it.
fn run_async<F>(threads: Option<usize>, main: impl FnOnce(CancellationToken) -> F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        main(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    token.cancel();
}
