//! The certificates `sparrow cert` makes, checked by rustls/webpki as peers will check them.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from(cert_der(pem).unwrap())
}

fn id(cluster: &str, role: Role, name: &str) -> Identity {
    Identity {
        cluster: cluster.into(),
        role,
        name: name.into(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Pem) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(der(&ca.cert)).unwrap();
    Arc::new(roots)
}

fn client_ok(ca: &Pem, cert: &Pem, at: OffsetDateTime) -> bool {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
    verifier
        .verify_client_cert(&der(&cert.cert), &[], t)
        .is_ok()
}

fn server_ok(ca: &Pem, cert: &Pem, name: &str, at: OffsetDateTime) -> bool {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let t = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&der(&cert.cert), &[], &name, &[], t)
        .is_ok()
}

#[test]
fn node_certificates_chain_to_their_ca_both_ways_and_name_their_holder() {
    let ca = new_ca("example", now(), DEFAULT_CA_DAYS).unwrap();
    let ams = issue(
        &ca,
        &id("example", Role::Node, "ams"),
        &["127.0.0.1".into()],
        now(),
        365,
    )
    .unwrap();
    assert!(client_ok(&ca, &ams, now()));
    assert!(server_ok(&ca, &ams, "ams", now()));
    assert!(server_ok(&ca, &ams, "127.0.0.1", now()));
    assert!(
        !server_ok(&ca, &ams, "nyc", now()),
        "the DNS name is the node's"
    );
    assert_eq!(
        identity_of(&der(&ams.cert)).unwrap(),
        id("example", Role::Node, "ams")
    );
    assert_eq!(
        identity_of(&der(&ams.cert)).unwrap().uri(),
        "sparrow://example/node/ams"
    );
    assert_eq!(ca_cluster(&ca.cert).unwrap(), "example");
    assert!(ca_cluster(&ams.cert).is_err());
}

#[test]
fn operators_authenticate_as_clients_only() {
    let ca = new_ca("example", now(), DEFAULT_CA_DAYS).unwrap();
    let alice = issue(
        &ca,
        &id("example", Role::Operator, "alice"),
        &[],
        now(),
        365,
    )
    .unwrap();
    assert!(client_ok(&ca, &alice, now()));
    assert!(!server_ok(&ca, &alice, "alice", now()));
    assert_eq!(identity_of(&der(&alice.cert)).unwrap().role, Role::Operator);
}

#[test]
fn another_ca_and_expired_or_future_certificates_are_refused() {
    let ca = new_ca("example", now(), DEFAULT_CA_DAYS).unwrap();
    let other = new_ca("example", now(), DEFAULT_CA_DAYS).unwrap();
    let foreign = issue(&other, &id("example", Role::Node, "ams"), &[], now(), 365).unwrap();
    assert!(!client_ok(&ca, &foreign, now()));
    assert!(!server_ok(&ca, &foreign, "ams", now()));
    let short = issue(&ca, &id("example", Role::Node, "ams"), &[], now(), 1).unwrap();
    assert!(client_ok(&ca, &short, now() + Duration::hours(12)));
    assert!(
        !client_ok(&ca, &short, now() + Duration::days(2)),
        "expired"
    );
    assert!(
        !client_ok(&ca, &short, now() - Duration::days(1)),
        "not yet valid"
    );
}

#[test]
fn identities_parse_strictly() {
    assert_eq!(
        Identity::parse("sparrow://prod-eu/node/ams-1"),
        Some(id("prod-eu", Role::Node, "ams-1"))
    );
    for bad in [
        "sparrow://prod/admin/ams",
        "sparrow://prod/node/ams/extra",
        "sparrow://Prod/node/ams",
        "https://prod/node/ams",
        "sparrow://prod/node/",
        "sparrow:prod/node/ams",
    ] {
        assert_eq!(Identity::parse(bad), None, "{bad}");
    }
    assert!(matches!(
        new_ca("Bad Name", now(), 1),
        Err(PkiError::BadName(_))
    ));
    let ca = new_ca("example", now(), 1).unwrap();
    assert!(matches!(
        issue(&ca, &id("example", Role::Node, "-ams"), &[], now(), 1),
        Err(PkiError::BadName(_))
    ));
}

#[test]
fn a_ca_key_that_does_not_parse_is_refused() {
    let mut ca = new_ca("example", now(), 1).unwrap();
    ca.key = "not a key".into();
    assert!(matches!(
        issue(&ca, &id("example", Role::Node, "ams"), &[], now(), 1),
        Err(PkiError::BadCa(_))
    ));
}

#[test]
fn pairs_are_written_once_with_a_private_key_file() {
    let dir = std::env::temp_dir().join(format!("sparrow-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = new_ca("example", now(), 1).unwrap();
    let (cert, key) = write_pair(&dir, "ca", &ca).unwrap();
    assert!(cert.ends_with("ca.pem") && key.ends_with("ca.key"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let err = write_pair(&dir, "ca", &ca).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    let back = read_pair(&dir, "ca").unwrap();
    assert_eq!(back.cert, ca.cert);
}
