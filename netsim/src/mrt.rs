//! MRT RIB dumps of generated route views: the writer lives beside the node's MRT loader
//! (`sparrow_node::routes::mrt::write`), re-exported here for netsim's worlds and benches.

pub use sparrow_node::routes::mrt::write::{MrtPeer, PeerRoutes, rib_dump};
