//! [P] The node's configuration: a strict TOML file, validated into [`Config`], a type that
//! cannot hold invalid values.
//!
//! Loading has two phases: `raw` mirrors the file (unknown keys refused), `validate` checks
//! meaning and reads the files the config names (zone file, route views, static map) through
//! a [`FileSource`], so everything here stays testable without a disk. [`load`] is the one
//! function that touches the file system. Every error renders as `file:line:col: reason`.

mod raw;
mod services;
#[cfg(test)]
mod tests;
mod transfer;
mod validate;
mod zones;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};

use crate::dns::zone::Zones;
use crate::policy::AdminState;
use crate::routes::mrt::PeerSelector;
use crate::routes::{RouteView, StaticMap};
pub use transfer::{TransferSettings, TsigKey};

/// TTL of static records that do not give one. An hour, as most zone files default to.
pub const DEFAULT_TTL: u32 = 3600;
/// TTL of geo answers: short, so that a changed answer reaches clients within half a minute.
pub const DEFAULT_GEO_TTL: u32 = 30;
/// POPs returned per geo answer (Super Sparrow's `--result_count`).
pub const DEFAULT_ANSWERS: u8 = 1;
/// Preference of a POP that does not set one; lower is preferred, as with MX.
pub const DEFAULT_PREFERENCE: u16 = 100;
/// Weight of a POP among equally near POPs; shares of clients are proportional to it.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Idle time after which a TCP client connection is closed (RFC 7766 suggests seconds).
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest UDP response we send: 1232 bytes avoids IP fragmentation (DNS Flag Day 2020).
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;
/// DNS-over-TCP connections per listen address: well under the usual 1024 open files
/// (which the node raises where it may), well over what resolvers keep open.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 512;
/// Most UDP workers per listen address a config may ask for.
pub const MAX_DNS_WORKERS: usize = 256;
/// SOA timers when the config gives none (RIPE-203 recommendations).
pub const DEFAULT_SOA_REFRESH: u32 = 86_400;
/// See [`DEFAULT_SOA_REFRESH`].
pub const DEFAULT_SOA_RETRY: u32 = 7_200;
/// See [`DEFAULT_SOA_REFRESH`].
pub const DEFAULT_SOA_EXPIRE: u32 = 3_600_000;
/// Negative-caching TTL (RFC 2308): how long resolvers remember NXDOMAIN and NODATA.
pub const DEFAULT_SOA_MINIMUM: u32 = 60;

/// A validated node configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from (for messages).
    pub origin: PathBuf,
    /// How this node runs.
    pub node: NodeSettings,
    /// The zones served: each with its SOA, NS and static records.
    pub zones: Zones,
    /// The POPs, in config order; a POP's index is its identity everywhere else.
    pub pops: Vec<Pop>,
    /// Geo-balanced names.
    pub geo: Vec<GeoName>,
    /// Operator overrides: prefix -> POP index.
    pub static_map: Option<Arc<StaticMap>>,
    /// The cluster this node belongs to; `None` runs it standalone.
    pub cluster: Option<ClusterConfig>,
    /// Per zone (by origin, in config order): who may transfer it, who is notified of a new
    /// serial, with which TSIG key.
    pub transfers: Vec<(LowerName, TransferSettings)>,
    /// Digest of what decides answers (see [`Config::answer_digest`]), computed once.
    pub(crate) digest: u64,
}

impl Config {
    /// A stable digest of everything that decides answers and must be the same on every
    /// node of a cluster: the zone's static records, the POPs (names, ASNs, addresses,
    /// preferences, weights, configured admin state), the geo names and the static map.
    /// Nodes publish it, so a half-rolled-out change shows in `sparrow status`.
    pub fn answer_digest(&self) -> u64 {
        self.digest
    }

    /// Computes [`Self::answer_digest`] from the parts.
    pub(crate) fn compute_digest(&self) -> u64 {
        let mut h = crate::policy::StableHasher::default();
        let mut put = |s: &str| {
            h.write(s.as_bytes());
            h.write(&[0]);
        };
        for zone in self.zones.iter() {
            put(&zone.origin_name().to_string());
            for r in zone.records() {
                put(&r.to_string());
            }
        }
        for p in &self.pops {
            put(&format!(
                "pop {} {} {:?} {:?} {} {} {}",
                p.name,
                p.asn,
                p.v4,
                p.v6,
                p.preference,
                p.weight,
                p.admin.as_str()
            ));
        }
        for g in &self.geo {
            put(&format!(
                "geo {} {} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                g.name,
                g.ttl,
                g.answers,
                g.pops,
                g.targets,
                g.when_down,
                g.groups,
                g.max_hops,
                g.weights,
                g.canary
            ));
            if let Some(h) = &g.https {
                put(&format!("https {} {:?}", g.name, h));
            }
        }
        if let Some(map) = &self.static_map {
            for (net, pop) in map.entries() {
                put(&format!("static {net} {pop}"));
            }
        }
        h.finish()
    }
}

/// TTL of geo answers while partitioned (local-only): short, so clients return to the best
/// POP soon after the partition heals.
pub const DEFAULT_LOCAL_ONLY_TTL: u32 = 10;
/// The default quorum: a majority of the configured POPs (`N / 2 + 1`), so that of two sides
/// of a partition at most one answers from the cluster.
pub fn default_quorum(pops: usize) -> usize {
    pops / 2 + 1
}

/// How long a starting node waits for its own view, a quorum and its peers' views before
/// it says it is ready anyway: long enough for a cluster of a hundred full views to pull
/// them, short enough that a node cut off at start still comes into service.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Gossip interval: a few rounds fit in the failure-detection budget of about two seconds.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// How this node joins its cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Cluster id; certificates must name it.
    pub id: String,
    /// Gossip address (QUIC over UDP).
    pub listen: SocketAddr,
    /// Addresses of nodes to join through.
    pub seeds: Vec<String>,
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// This node's certificate (PEM); names `sparrow://ID/node/OWN_POP`.
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// Nodes (self included) needed to answer from the cluster.
    pub quorum: usize,
    /// TTL of geo answers while local-only.
    pub local_only_ttl: u32,
    /// Time between gossip rounds.
    pub gossip_interval: Duration,
    /// Serial numbers of revoked certificates (lower-case hex): refused at every handshake.
    pub revoked: Vec<String>,
}

/// Settings of this node.
#[derive(Debug)]
pub struct NodeSettings {
    /// Index of this node's own POP in [`Config::pops`].
    pub pop: usize,
    /// Addresses served over both UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Idle timeout of TCP connections; also the longest a query may take to arrive and a
    /// response to be taken.
    pub tcp_idle_timeout: Duration,
    /// Largest UDP response sent, whatever the client offers.
    pub max_udp_payload: u16,
    /// UDP workers per listen address, each with its own socket and thread (`None`: one
    /// per core available when the server starts). Read at start; a reload keeps it.
    pub dns_workers: Option<usize>,
    /// DNS-over-TCP connections open at once per listen address; past it the one idle the
    /// longest is closed. Read at start; a reload keeps it.
    pub tcp_max_connections: usize,
    /// The secret of DNS server cookies (RFC 9018), shared by the nodes of a cluster so that
    /// each accepts the others' cookies (`None`: a random one per start).
    pub cookie_secret: Option<[u8; 16]>,
    /// What NSID (RFC 5001) and `id.server`/`hostname.bind` CH TXT answer: the own POP's
    /// name unless the config says otherwise; `None`: off.
    pub nsid: Option<Vec<u8>>,
    /// Response rate limiting over UDP (`[node.rrl]`); off when absent. Read at start; a
    /// reload keeps it.
    pub rrl: Option<RrlSettings>,
    /// Probes of this node's own POP; it is healthy while all are up.
    pub probes: Vec<crate::health::spec::Probe>,
    /// The operator API's Unix socket (`None`: the default path).
    pub api_socket: Option<PathBuf>,
    /// Where the node keeps state across restarts (the route views pulled from peers,
    /// operators' admin states), if anywhere.
    pub state_dir: Option<PathBuf>,
    /// Largest file the node reads (files the config names, MRT dumps as they change).
    pub max_file_bytes: u64,
    /// The longest a starting node waits to be ready (own view in, cluster joined, every
    /// live peer's view held) before it says it is ready anyway.
    pub ready_timeout: Duration,
    /// POPs loaded above this are skipped while others are not.
    pub load_high_water: f32,
    /// How this node measures its own POP's load, if it does.
    pub load: Option<crate::health::spec::LoadProbe>,
    /// Where the Prometheus metrics endpoint listens (`None`: no endpoint).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the own POP's route view comes from.
    pub own_view: OwnViewSource,
}

/// Response rate limiting per source prefix (`dns::rrl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrlSettings {
    /// Responses per second each prefix may receive (a second's worth at once).
    pub responses_per_second: u32,
    /// Every `slip`-th response over the rate goes out truncated; 0: all are dropped.
    pub slip: u32,
    /// Length of the IPv4 prefixes counted together.
    pub ipv4_prefix: u8,
    /// Length of the IPv6 prefixes counted together.
    pub ipv6_prefix: u8,
}

/// RRL: every second refused response goes out truncated (Knot's and NSD's default), so a
/// real client behind a spoofed flood gets through over TCP at half the rate.
pub const DEFAULT_RRL_SLIP: u32 = 2;
/// RRL: IPv4 sources are counted per /24 (Knot, NSD, BIND).
pub const DEFAULT_RRL_IPV4_PREFIX: u8 = 24;
/// RRL: IPv6 sources are counted per /56 (Knot, NSD, BIND).
pub const DEFAULT_RRL_IPV6_PREFIX: u8 = 56;

/// How often an MRT dump's size and modification time are checked for a change.
pub const DEFAULT_MRT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The BGP port (RFC 4271 §8.2.1).
pub const DEFAULT_BGP_PORT: u16 = 179;
/// Hold time Sparrow proposes: the common router default (RFC 4271 §10 suggests 90 s).
pub const DEFAULT_BGP_HOLD_TIME: u16 = 90;
/// First wait before reconnecting after a session fails; doubled after each failure.
pub const DEFAULT_BGP_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
pub const DEFAULT_BGP_RETRY_MAX: Duration = Duration::from_secs(60);
/// Shortest time between two views published while updates flow: churn of 1,000 updates a
/// second then rebuilds the node's decision tables once a second, not 1,000 times.
pub const DEFAULT_BGP_PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Where the own POP's route view comes from.
#[derive(Debug, Clone)]
pub enum OwnViewSource {
    /// The own POP's `route_view` file (or none), read with the config.
    File(Option<PathBuf>),
    /// An MRT RIB dump (`[node.mrt]`), read with the config and reloaded when it changes.
    Mrt(MrtSource),
    /// A BGP session with the POP's router (`[node.bgp]`).
    Bgp(BgpConfig),
}

impl OwnViewSource {
    /// A short description for status and logs (`mrt views/ams.mrt peer 192.0.2.1`).
    pub fn describe(&self) -> String {
        match self {
            Self::File(Some(path)) => format!("file {}", path.display()),
            Self::File(None) => "none".to_owned(),
            Self::Mrt(m) => format!("mrt {} peer {}", m.path.display(), m.peer),
            Self::Bgp(b) => format!("bgp {} AS{}", b.peer, b.peer_asn),
        }
    }
}

/// The own POP's view from an MRT RIB dump.
#[derive(Debug, Clone)]
pub struct MrtSource {
    /// The dump (plain, gzip or bzip2).
    pub path: PathBuf,
    /// Which peer(s) of the dump make the view.
    pub peer: PeerSelector,
    /// How often the file is checked for a change.
    pub poll_interval: Duration,
}

/// Who opens the BGP session's TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpMode {
    /// Sparrow connects to the router.
    Active,
    /// Sparrow listens on this address and the router connects.
    Passive(SocketAddr),
}

/// A read-only BGP session with the POP's router.
#[derive(Debug, Clone)]
pub struct BgpConfig {
    /// Sparrow's AS number in the session.
    pub local_asn: u32,
    /// Sparrow's BGP identifier.
    pub router_id: Ipv4Addr,
    /// The router's address.
    pub peer: IpAddr,
    /// The router's port (active mode).
    pub peer_port: u16,
    /// The router's AS number; an OPEN naming another is refused (Bad Peer AS).
    pub peer_asn: u32,
    /// Active or passive.
    pub mode: BgpMode,
    /// Hold time proposed in OPEN, seconds (0: no keepalives).
    pub hold_time: u16,
    /// First reconnection delay.
    pub retry_min: Duration,
    /// Longest reconnection delay.
    pub retry_max: Duration,
    /// Shortest time between two published views.
    pub publish_interval: Duration,
    /// Most prefixes accepted from the router, and what to do past it.
    pub max_prefixes: u64,
    /// What happens past `max_prefixes`.
    pub max_prefix_action: MaxPrefixAction,
}

/// What a BGP session does when the router sends more prefixes than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxPrefixAction {
    /// End the session (NOTIFICATION Cease, "maximum number of prefixes reached", RFC 4486)
    /// and keep the last good view, stale, until a later session stays within the limit.
    Refuse,
    /// Keep the session and the prefixes held, and ignore new prefixes until some are
    /// withdrawn (logged once per session).
    Hold,
}

/// Default limit of prefixes from the router: three times a full table of both families
/// (about 1.3 million in 2026), so a real table always fits and a runaway peer does not
/// fill memory.
pub const DEFAULT_BGP_MAX_PREFIXES: u64 = 4_000_000;

/// A point of presence.
#[derive(Debug)]
pub struct Pop {
    /// Short name (`ams`).
    pub name: String,
    /// The POP's AS number (names it in the static map).
    pub asn: u32,
    /// IPv4 answer addresses.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 answer addresses.
    pub v6: Vec<Ipv6Addr>,
    /// Tie-break among equally near POPs: lower wins.
    pub preference: u16,
    /// Share of clients among equally near POPs of equal preference.
    pub weight: u32,
    /// Operator state from the config.
    pub admin: AdminState,
    /// The POP's route view, when this node has one for it.
    pub route_view: Option<Arc<RouteView>>,
    /// The file it was read from.
    pub route_view_path: Option<PathBuf>,
}

/// A geo-balanced name.
#[derive(Debug)]
pub struct GeoName {
    /// Fully qualified name.
    pub name: Name,
    /// TTL of its answers.
    pub ttl: u32,
    /// How many POPs an answer lists.
    pub answers: u8,
    /// Indexes of the POPs that may serve it, in config order.
    pub pops: Vec<usize>,
    /// The service's name: the geo name relative to the zone's origin (`api`); what probes,
    /// drains, status and metrics call it.
    pub service: String,
    /// Per POP (same index as [`Config::pops`]): what this name answers with at that POP.
    pub targets: Vec<Target>,
    /// What it answers when no POP serving it is eligible (live, healthy, active).
    pub when_down: WhenDown,
    /// Per POP (same index as [`Config::pops`]): its failover group for this name (0
    /// first; POPs the `groups` list leaves out come after every listed group).
    pub groups: Vec<u8>,
    /// Past this many AS hops (or without a route) a POP comes after every POP within it.
    pub max_hops: Option<u8>,
    /// Per POP (same index): its weight for this name (default: the POP's `weight`).
    pub weights: Vec<u32>,
    /// Per POP (same index): its canary share of this name's clients, in 2^-32 (0: none).
    pub canary: Vec<u32>,
    /// Steered HTTPS records (`[geo.https]`), if the name answers them.
    pub https: Option<HttpsRecord>,
}

/// A geo name's steered HTTPS record (RFC 9460, ServiceMode): one per POP, with the POP's
/// addresses for the name as `ipv4hint`/`ipv6hint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsRecord {
    /// SvcPriority (1 or more).
    pub priority: u16,
    /// `alpn` (empty: none).
    pub alpn: Vec<String>,
    /// `port`, if not the default.
    pub port: Option<u16>,
    /// Per POP (same index): its TargetName (`None`: `.`, the owner name).
    pub targets: Vec<Option<Name>>,
}

/// A service's answer when every POP serving it is down, drained or unhealthy for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WhenDown {
    /// Rank every POP anyway, as if all were up (a possibly degraded POP beats no answer).
    #[default]
    FailOpen,
    /// No record (NODATA): clients fail fast, or fall back on their own.
    NoData,
    /// This target instead (of the same kind as the service's targets).
    Fallback(Target),
}

impl GeoName {
    /// Whether it answers with a CNAME per POP (else with addresses).
    pub fn is_cname(&self) -> bool {
        self.pops
            .first()
            .is_some_and(|&p| matches!(self.targets[p], Target::Cname(_)))
    }
}

/// What a geo name answers with at one POP (`[[geo.target]]`; default: the POP's addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A and AAAA records.
    Addresses {
        /// IPv4 addresses.
        v4: Vec<Ipv4Addr>,
        /// IPv6 addresses.
        v6: Vec<Ipv6Addr>,
    },
    /// One CNAME record to this name.
    Cname(Name),
}

/// A configuration that was accepted, and what was noticed while loading it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Partial loads (skipped lines in route files) to log at `warn`.
    pub warnings: Vec<String>,
}

/// A refused configuration: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The 1-based line and column of byte `offset` in `text` (how config and scenario errors
/// name their place).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Largest file a config may name (zone file, route view, static map, MRT dump,
/// certificates) unless `[node] max_file_mib` says otherwise: far above a full table's
/// route file or MRT dump, far below what would exhaust a server.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Where the files a config names come from: the disk in production, a map in tests.
pub trait FileSource {
    /// Reads a whole file as UTF-8 text, refusing one larger than `max` bytes.
    fn read(&self, path: &Path, max: u64) -> std::io::Result<String>;

    /// Reads a whole file as bytes (MRT dumps), refusing one larger than `max` bytes.
    fn read_bytes(&self, path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        self.read(path, max).map(String::into_bytes)
    }
}

/// The real file system: regular files only (not a FIFO, a device such as `/dev/zero`, or a
/// socket), read up to a limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl FileSource for Disk {
    fn read(&self, path: &Path, max: u64) -> std::io::Result<String> {
        String::from_utf8(read_bytes_limited(path, max)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn read_bytes(&self, path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        read_bytes_limited(path, max)
    }
}

/// Reads the regular file at `path` as text, refusing anything else and anything larger than
/// `max` bytes (the one place the node reads a file it was told to read).
pub fn read_limited(path: &Path, max: u64) -> std::io::Result<String> {
    Disk.read(path, max)
}

/// [`read_limited`] as bytes. The length is checked before reading and the read is bounded
/// too, so a file that grows meanwhile is still refused rather than read without end.
pub fn read_bytes_limited(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    // Opening a FIFO for reading waits for a writer: look before opening, and open without
    // waiting (no effect on a regular file), then check what was opened.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than the limit of {max} bytes (`[node] max_file_mib`)"),
        )
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = read_limited(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
        file: path.to_owned(),
        position: None,
        reason: format!("cannot read config: {e}"),
    })?;
    Config::from_str(&text, path, &Disk)
}

impl Config {
    /// The transfer settings of the zone whose origin is `origin` (none: nothing allowed).
    pub fn transfer_of(&self, origin: &LowerName) -> Option<&TransferSettings> {
        self.transfers
            .iter()
            .find_map(|(o, t)| (o == origin).then_some(t))
    }

    /// Every TSIG key of the config (`[[tsig_key]]`).
    pub fn tsig_keys(&self) -> &[TsigKey] {
        self.transfers.first().map_or(&[], |(_, t)| &t.keys)
    }

    /// The node's own POP.
    pub fn own_pop(&self) -> &Pop {
        &self.pops[self.node.pop]
    }
}

/// Parses a name relative to `base`; `@` is `base`, a trailing dot makes it absolute.
pub fn parse_name(s: &str, base: &Name) -> Result<Name, String> {
    if s == "@" {
        return Ok(base.clone());
    }
    let name = <Name as std::str::FromStr>::from_str(s)
        .map_err(|e| format!("`{s}` is not a domain name: {e}"))?;
    if name.is_fqdn() {
        Ok(name)
    } else if base.is_root() {
        // A zone origin written without its final dot.
        let mut name = name;
        name.set_fqdn(true);
        Ok(name)
    } else {
        name.append_domain(base)
            .map_err(|e| format!("`{s}` is too long under {base}: {e}"))
    }
}
