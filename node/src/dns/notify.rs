//! [E] NOTIFY (RFC 1996) to the secondaries of `[zone] notify` when a reload changes the
//! zone's serial: one UDP exchange per secondary, retried [`ATTEMPTS`] times with a wait
//! that doubles from [`FIRST_WAIT`] (1 + 2 + 4 + 8 + 16 s), each outcome logged. The
//! message itself is built by `dns::xfr` (pure).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use hickory_proto::rr::LowerName;

use super::xfr;
use crate::config::Config;

/// Sends of one NOTIFY before giving up (RFC 1996 section 3.6: "a small number").
pub const ATTEMPTS: u32 = 5;
/// Wait for the first answer; doubled after each unanswered send.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// After a reload from `old` to `new`: when the serial changed, notifies every secondary of
/// `new` (in the background, until `shutdown`).
pub fn on_reload(old: &Config, new: &Arc<Config>, shutdown: &CancellationToken) {
    for zone in new.zones.iter() {
        let before = old.zones.get(zone.origin()).map(|z| xfr::serial(z.soa()));
        if before == Some(xfr::serial(zone.soa())) {
            continue;
        }
        let Some(settings) = new.transfer_of(zone.origin()) else {
            continue;
        };
        for &secondary in &settings.notify {
            let (config, shutdown) = (new.clone(), shutdown.clone());
            let origin = zone.origin().clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = notify(&config, &origin, secondary) => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
    }
}

/// Notifies `secondary` of `config`'s zone `origin`, retrying until it answers.
async fn notify(config: &Config, origin: &LowerName, secondary: SocketAddr) {
    let (Some(zone), Some(settings)) = (config.zones.get(origin), config.transfer_of(origin))
    else {
        return;
    };
    let soa = zone.soa();
    let zone = zone.origin();
    let serial = xfr::serial(soa).unwrap_or_default();
    let bind: SocketAddr = if secondary.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap_or(secondary);
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%secondary, %zone, error = %e, "cannot send NOTIFY: no socket");
            return;
        }
    };
    let mut wait = FIRST_WAIT;
    for attempt in 1..=ATTEMPTS {
        let id = random_id();
        let key = settings.tsig.as_ref();
        let Some(message) = xfr::notify_message(id, soa, key, crate::clock::unix_ms() / 1000)
        else {
            warn!(%zone, "cannot encode a NOTIFY");
            return;
        };
        if let Err(e) = socket.send_to(&message, secondary).await {
            warn!(%secondary, %zone, attempt, error = %e, "NOTIFY not sent");
        } else if let Some(code) = answer(&socket, secondary, id, wait).await {
            info!(%secondary, %zone, serial, rcode = %code, attempt, "NOTIFY answered");
            return;
        }
        wait *= 2;
    }
    warn!(%secondary, %zone, serial, attempts = ATTEMPTS, "NOTIFY never answered; the secondary will find the serial at its next refresh");
}

/// The code of `secondary`'s answer to NOTIFY `id`, if it comes within `wait`.
async fn answer(
    socket: &UdpSocket,
    secondary: SocketAddr,
    id: u16,
    wait: Duration,
) -> Option<hickory_proto::op::ResponseCode> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from == secondary
            && let Some(code) = xfr::notify_ack(&buf[..len], id)
        {
            return Some(code);
        }
    }
}

fn random_id() -> u16 {
    use ring::rand::SecureRandom as _;
    let mut id = [0u8; 2];
    // A failed random source leaves 0: the id only pairs answers with sends.
    let _ = ring::rand::SystemRandom::new().fill(&mut id);
    u16::from_be_bytes(id)
}
