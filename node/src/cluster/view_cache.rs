//! [E] Pulled route views kept on disk, so a restarted node answers from the whole cluster's
//! last known views at once, before any peer is reachable (a node that restarts during a
//! partition still knows where every POP is nearer).
//!
//! One file per POP, `STATE_DIR/views/POP.view`, holding the transfer exactly as it was
//! received (preamble, header, frames); it is written to a temporary file and renamed, so a
//! crash never leaves half a view. At start every file is checked as a pull is (order,
//! counts, digest): a file that fails is logged and ignored, and the view is pulled again.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use sparrow_proto::views::ViewHeader;

use crate::config::Config;
use crate::routes::DecisionTable;
use crate::routes::decision::{HopSource as _, PartMerge};
use crate::routes::transfer::{TransferError, ViewStream};
use crate::snapshot::{StreamedViews, Tables, ViewInfo};

/// Most parts the kept views are split into to be merged at once (one per core).
const MAX_PARTS: usize = 4;
/// Chunks of merged ranges a part may have sent ahead of the final merge.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Read buffer per kept view while loading: frames are read whole past it, so it only
/// batches the small reads (length prefixes).
const STREAM_BUFFER: usize = 16 * 1024;

/// Keeps `bytes`, the transfer of POP `pop`'s view, in `dir`.
pub fn save(dir: &Path, pop: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = path_of(dir, pop);
    let tmp = dir.join(format!(".{pop}.view.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The views kept in `dir` for every POP but the node's own, merged into `tables` (built for
/// `config`): the tables to install ([`crate::state::Change::Kept`]) and the digest held per
/// POP. Blocking and CPU-heavy: it runs on the node's builder thread.
pub fn load(dir: &Path, config: &Config, tables: &Tables) -> (StreamedViews, Vec<Option<u64>>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_PARTS);
    load_with(dir, config, tables, workers)
}

/// [`load`] with the views split into `workers` parts at most.
fn load_with(
    dir: &Path,
    config: &Config,
    tables: &Tables,
    workers: usize,
) -> (StreamedViews, Vec<Option<u64>>) {
    let mut held = vec![None; config.pops.len()];
    let started = std::time::Instant::now();
    let pops: Vec<usize> = (0..config.pops.len())
        .filter(|&i| i != config.node.pop && path_of(dir, &config.pops[i].name).exists())
        .collect();
    // Every kept view is read as a stream, all of them at once, into one pass that builds
    // each decision table (see `Tables::build_streamed`): no view is ever decoded whole.
    // The views are split into one part per core, each merged on its own thread, and the
    // parts' rows put together on this one.
    // Whatever parsing the config freed (the own view's text and parse state) goes back
    // first, so that the tables being built do not come on top of it.
    if !pops.is_empty() {
        crate::memory::release_free();
    }
    let open = |pop: usize| open_kept(dir, &config.pops[pop].name);
    let build = |table: &DecisionTable, columns: &[(usize, usize)]| {
        build_table(table, columns, &open, workers)
    };
    let info = |pop: usize, header: ViewHeader| ViewInfo {
        version: Some(header.version),
        digest: Some(header.digest),
        prefixes: header.prefixes,
        source: format!(
            "kept from the last run (pulled from {})",
            config.pops[pop].name
        ),
        stale_since_ms: None,
    };
    let mut streamed = tables.build_streamed(config, &pops, build, info);
    // A kept view of a POP that no geo name lists reaches no table; it is still read
    // through and checked, so that status shows it and it is not pulled again.
    for &pop in &pops {
        if config.geo.iter().any(|g| g.pops.contains(&pop)) {
            continue;
        }
        match read_through(open(pop)) {
            Ok(header) => streamed.loaded.push((pop, header, info(pop, header))),
            Err(e) => streamed.failed.push((pop, e)),
        }
    }
    for (pop, e) in &streamed.failed {
        warn!(
            file = %path_of(dir, &config.pops[*pop].name).display(),
            error = %e,
            "kept route view refused; it will be pulled again"
        );
    }
    for (pop, header, _) in &streamed.loaded {
        held[*pop] = Some(header.digest);
    }
    if !pops.is_empty() {
        // Building the tables freed far more memory than they hold (the old tables, the
        // interning index, growth slack); give it back to the system.
        crate::memory::release_free();
        info!(
            views = streamed.loaded.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "route views kept from the last run loaded"
        );
    }
    (streamed, held)
}

/// A table built from kept views, and the header of each.
type Built = (DecisionTable, Vec<(usize, ViewHeader)>);

/// A stream of a kept view.
type Stream = ViewStream<std::io::BufReader<std::fs::File>>;

/// Builds `table` with the columns of `columns` (`(column, pop)`) replaced by the kept
/// views `open` reads, in `workers` parts merged at once; see `Tables::build_streamed`.
fn build_table(
    table: &DecisionTable,
    columns: &[(usize, usize)],
    open: &(impl Fn(usize) -> Result<Stream, TransferError> + Sync),
    workers: usize,
) -> Result<Built, (usize, TransferError)> {
    let mut streams = Vec::with_capacity(columns.len());
    for &(column, pop) in columns {
        streams.push((column, pop, open(pop).map_err(|e| (pop, e))?));
    }
    let headers = streams
        .iter()
        .map(|(_, pop, s)| (*pop, s.header()))
        .collect();
    let parts = workers.min(streams.len()).max(1);
    if parts == 1 {
        let pops: Vec<usize> = streams.iter().map(|&(_, pop, _)| pop).collect();
        let sources = streams.into_iter().map(|(c, _, s)| (c, s)).collect();
        let built = table.with_sources(sources).map_err(|(i, e)| (pops[i], e))?;
        return Ok((built, headers));
    }
    let per_part = streams.len().div_ceil(parts);
    let mut groups: Vec<Vec<(usize, usize, Stream)>> = Vec::new();
    let mut rest = streams.into_iter();
    loop {
        let group: Vec<_> = rest.by_ref().take(per_part).collect();
        if group.is_empty() {
            break;
        }
        groups.push(group);
    }
    std::thread::scope(|scope| {
        let mut inputs = Vec::new();
        for group in groups {
            let (tx, rx) = std::sync::mpsc::sync_channel(CHUNKS_IN_FLIGHT);
            let columns: Vec<usize> = group.iter().map(|&(c, _, _)| c).collect();
            let pops: Vec<usize> = group.iter().map(|&(_, pop, _)| pop).collect();
            let sources = group.into_iter().map(|(_, _, s)| s).collect();
            scope.spawn(move || {
                let mut part = PartMerge::new(sources);
                loop {
                    let chunk = part.next_chunk().map_err(|(i, e)| (pops[i], e));
                    let last = !matches!(&chunk, Ok(c) if !c.is_last());
                    // The receiver is gone when another part failed: stop.
                    if tx.send(chunk).is_err() || last {
                        return;
                    }
                }
            });
            inputs.push((columns, rx.into_iter()));
        }
        let built = table.with_parts(inputs).map_err(|(_, failure)| failure)?;
        Ok((built, headers))
    })
}

/// Reads a stream to its end, every check included; returns its header.
fn read_through(stream: Result<Stream, TransferError>) -> Result<ViewHeader, TransferError> {
    let mut stream = stream?;
    while stream.next_v4()?.is_some() {}
    while stream.next_v6()?.is_some() {}
    Ok(stream.header())
}

/// Opens the view of POP `pop` kept in `dir` as a stream.
fn open_kept(dir: &Path, pop: &str) -> Result<Stream, TransferError> {
    let file =
        std::fs::File::open(path_of(dir, pop)).map_err(|e| TransferError::Read(e.to_string()))?;
    ViewStream::open(std::io::BufReader::with_capacity(STREAM_BUFFER, file))
}

/// Where POP `pop`'s view is kept in `dir`.
fn path_of(dir: &Path, pop: &str) -> PathBuf {
    dir.join(format!("{pop}.view"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Disk;
    use crate::routes::parse_route_view;
    use crate::routes::transfer;

    fn example(edit: impl Fn(String) -> String) -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = edit(std::fs::read_to_string(&path).unwrap());
        Config::from_str(&text, &path, &Disk).unwrap().config
    }

    #[test]
    fn kept_views_load_and_damaged_or_missing_ones_are_skipped() {
        let config = example(|t| t);
        let base = Tables::from_config(&config);
        let dir = std::env::temp_dir().join(format!("sparrow-view-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // nyc's node now reaches 100.64.2.0/24 in 6 hops: ams (3) becomes the nearest.
        let (view, _) = parse_route_view("100.64.0.0/16 1 2 3 4 5 6\n");
        let encoded = transfer::encode(&view, 42);
        let bytes = transfer::stream_bytes(&encoded);
        save(&dir, "nyc", &bytes).unwrap();
        let mut damaged = bytes.clone();
        let last = damaged.len() - 8;
        damaged[last] ^= 0xff;
        save(&dir, "syd", &damaged).unwrap();
        // The own POP's file, if any, is never loaded as pulled.
        save(&dir, "ams", &bytes).unwrap();
        // One part (this thread) and two parts (two threads, rows put together here) load
        // the same tables.
        let (one, held) = load_with(&dir, &config, &base, 1);
        let (two, held_parts) = load_with(&dir, &config, &base, 2);
        assert_eq!(held, held_parts);
        assert_eq!(held, vec![None, Some(encoded.header.digest), None]);
        let s = crate::snapshot::Snapshot::new(Arc::new(example(|t| t)), base.with_streamed(&two));
        let info = s.view_info(1).unwrap();
        assert_eq!(info.version, Some(42));
        assert!(info.source.starts_with("kept from the last run"));
        assert!(
            s.view_info(2).unwrap().source.starts_with("file"),
            "syd keeps its file view"
        );
        let routed = s.route(0, "100.64.2.1".parse().unwrap());
        assert_eq!(
            routed.ranking.order.first(),
            Some(&0),
            "ams wins with nyc's kept view"
        );
        // The damaged view left no trace: the tables are those of nyc's view alone.
        let nyc_only = base.with_pulled(
            &config,
            &[(
                1,
                Arc::new(transfer::decode_stream(&bytes).unwrap().1),
                info.clone(),
            )],
        );
        let one = base.with_streamed(&one);
        for geo in 0..config.geo.len() {
            assert_eq!(
                s.decision_table(geo).dump(),
                nyc_only.decision_table(geo).dump(),
                "geo name {geo}"
            );
            assert_eq!(
                one.decision_table(geo).dump(),
                nyc_only.decision_table(geo).dump(),
                "geo name {geo}, one part"
            );
        }
        assert!(!dir.join(".nyc.view.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_kept_view_no_geo_name_uses_is_checked_and_held_but_builds_nothing() {
        let edit = |t: String| {
            t.replace(
                "# pops = [\"ams\", \"nyc\", \"syd\"]",
                "pops = [\"ams\", \"nyc\"]",
            )
        };
        let config = example(edit);
        let base = Tables::from_config(&config);
        let dir = std::env::temp_dir().join(format!("sparrow-view-outside-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let encoded = transfer::encode(&parse_route_view("100.64.0.0/16 1 2 3 4 5 6\n").0, 9);
        let bytes = transfer::stream_bytes(&encoded);
        save(&dir, "syd", &bytes).unwrap();
        let (streamed, held) = load_with(&dir, &config, &base, 2);
        assert_eq!(held, vec![None, None, Some(encoded.header.digest)]);
        let t = base.with_streamed(&streamed);
        assert!(t.view_info(2).unwrap().source.starts_with("kept"));
        assert_eq!(t.decision_table(0).dump(), base.decision_table(0).dump());
        // Damaged, it is refused like any other and syd keeps its file view.
        let mut damaged = bytes.clone();
        let last = damaged.len() - 8;
        damaged[last] ^= 0xff;
        save(&dir, "syd", &damaged).unwrap();
        let (streamed, held) = load_with(&dir, &config, &base, 2);
        assert_eq!(held, vec![None, None, None]);
        assert!(
            base.with_streamed(&streamed)
                .view_info(2)
                .unwrap()
                .source
                .starts_with("file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
