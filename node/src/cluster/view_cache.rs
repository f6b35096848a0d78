//! [E] Pulled route views kept on disk, so a restarted node answers from the whole cluster's
//! last known views at once, before any peer is reachable (a node that restarts during a
//! partition still knows where every POP is nearer).
//!
//! One file per POP, `STATE_DIR/views/POP.view`, holding the transfer exactly as it was
//! received (preamble, header, frames); it is written to a temporary file and renamed, so a
//! crash never leaves half a view. At start every file is checked as a pull is (order,
//! counts, digest): a file that fails is logged and ignored, and the view is pulled again.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tracing::{info, warn};

use crate::routes::transfer;
use crate::snapshot::{Snapshot, ViewInfo};

/// Views merged into the decision tables per pass while loading (bounds the memory held in
/// decoded views at once).
const LOAD_BATCH: usize = 8;

/// Keeps `bytes`, the transfer of POP `pop`'s view, in `dir`.
pub fn save(dir: &Path, pop: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{pop}.view"));
    let tmp = dir.join(format!(".{pop}.view.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Loads the views kept in `dir` for every POP but the node's own into `snapshot`; returns
/// the digest held per POP.
pub async fn load_into(dir: &Path, snapshot: &Arc<ArcSwap<Snapshot>>) -> Vec<Option<u64>> {
    let dir = dir.to_owned();
    let snapshot = snapshot.clone();
    let loaded = tokio::task::spawn_blocking(move || load_blocking(&dir, &snapshot)).await;
    loaded.unwrap_or_else(|e| {
        warn!(error = %e, "loading kept route views failed");
        Vec::new()
    })
}

fn load_blocking(dir: &Path, snapshot: &Arc<ArcSwap<Snapshot>>) -> Vec<Option<u64>> {
    let config = snapshot.load().config.clone();
    let mut held = vec![None; config.pops.len()];
    let started = std::time::Instant::now();
    let files: Vec<(usize, std::path::PathBuf)> = config
        .pops
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != config.node.pop)
        .map(|(i, pop)| (i, dir.join(format!("{}.view", pop.name))))
        .filter(|(_, path)| path.exists())
        .collect();
    // Reading and checking a full view takes a fraction of a second: every core but one
    // decodes while this thread merges what is ready into the decision tables, a batch at a
    // time (the channel's bound caps the decoded views held at once).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::sync_channel(LOAD_BATCH);
    let mut loaded = 0usize;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (tx, next, files) = (tx.clone(), &next, &files);
            scope.spawn(move || {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((i, path)) = files.get(n) else {
                        return;
                    };
                    let decoded = std::fs::read(path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| transfer::decode_stream(&b).map_err(|e| e.to_string()));
                    if tx.send((*i, path.clone(), decoded)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut batch = Vec::new();
        let flush = |batch: &mut Vec<_>| {
            if !batch.is_empty() {
                snapshot.rcu(|s| s.with_pulled(batch));
                batch.clear();
            }
        };
        for (i, path, decoded) in rx {
            match decoded {
                Ok((header, view)) => {
                    held[i] = Some(header.digest);
                    let info = ViewInfo {
                        version: Some(header.version),
                        digest: Some(header.digest),
                        prefixes: header.prefixes,
                        source: format!(
                            "kept from the last run (pulled from {})",
                            config.pops[i].name
                        ),
                        stale_since_ms: None,
                    };
                    batch.push((i, Arc::new(view), info));
                    loaded += 1;
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "kept route view refused; it will be pulled again");
                }
            }
            if batch.len() == LOAD_BATCH {
                flush(&mut batch);
            }
        }
        flush(&mut batch);
    });
    if loaded > 0 {
        info!(
            views = loaded,
            took_ms = started.elapsed().as_millis() as u64,
            "route views kept from the last run loaded"
        );
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Disk};
    use crate::routes::parse_route_view;

    #[test]
    fn kept_views_load_and_damaged_or_missing_ones_are_skipped() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/examples/single-node/sparrow.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::from_str(&text, &path, &Disk).unwrap().config;
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::from_config(config)));
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
        let held = load_blocking(&dir, &snapshot);
        assert_eq!(held, vec![None, Some(encoded.header.digest), None]);
        let s = snapshot.load();
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
        assert!(!dir.join(".nyc.view.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
