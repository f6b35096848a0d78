//! The many-POP fixture of `--bench scale` and `--bench answer`: a config of `pops` POPs
//! (the node is `p00`) and each POP's view as its peers take it in.

use std::time::Instant;

use ipnet::IpNet;
use sparrow_netsim::fulltable;
use sparrow_node::routes::transfer::{self, ViewDecoder};
use sparrow_node::routes::{HopRanges, RouteView};
use sparrow_node::snapshot::ViewInfo;

/// The config text of a node of POP `p00` in a cluster of `pops` POPs: zone `example.net.`
/// and POP `pNN` (AS 65000+NN) at 198.18.x.y and 2001:db8:NN::1. No geo name: the bench
/// adds its own.
pub fn pops_config_text(pops: usize) -> String {
    let mut text = String::from(
        "[node]\npop = \"p00\"\nlisten = [\"127.0.0.1:0\"]\n\n\
         [zone]\norigin = \"example.net.\"\nns = [\"ns1\"]\n\n\
         [zone.soa]\nmname = \"ns1\"\nrname = \"hostmaster\"\nserial = 1\n\n\
         [[zone.record]]\nname = \"ns1\"\ntype = \"A\"\ndata = \"192.0.2.53\"\n\n",
    );
    for i in 0..pops {
        text.push_str(&format!(
            "[[pop]]\nname = \"p{i:02}\"\nasn = {}\naddresses = [\"198.18.{}.{}\", \"2001:db8:{i:x}::1\"]\n\n",
            65_000 + i,
            i / 256,
            i % 256
        ));
    }
    text
}

/// A POP's view as its peers take it in.
pub struct Pulled {
    /// The decoded view.
    pub hops: HopRanges,
    /// What the node records of it.
    pub info: ViewInfo,
    /// Seconds spent decoding it.
    pub decode_secs: f64,
    /// Bytes of the transfer's frames.
    pub bytes: usize,
}

/// POP `pop`'s view of `prefixes` (paths from `fulltable::pop_view_entries` with `seed`):
/// encoded by its node, checked and decoded as a peer does.
pub fn pulled(prefixes: &[IpNet], pop: usize, seed: u64) -> Pulled {
    let view = RouteView::new(
        fulltable::pop_view_entries(prefixes, pop as u32, seed)
            .into_iter()
            .map(|(net, path)| (net, path.into_boxed_slice()))
            .collect(),
    );
    let encoded = transfer::encode(&view, 1);
    drop(view);
    let bytes = encoded.body_bytes();
    let started = Instant::now();
    let mut decoder = ViewDecoder::new(encoded.header).expect("header");
    let mut hops = None;
    for f in &encoded.frames {
        hops = decoder.push(&f[4..]).expect("frame");
    }
    let decode_secs = started.elapsed().as_secs_f64();
    let info = ViewInfo {
        version: Some(1),
        digest: Some(encoded.header.digest),
        prefixes: encoded.header.prefixes,
        source: format!("pulled from p{pop:02}"),
        stale_since_ms: None,
    };
    Pulled {
        hops: hops.expect("End frame"),
        info,
        decode_secs,
        bytes,
    }
}
