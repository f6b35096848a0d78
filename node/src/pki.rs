//! [E] The cluster PKI: `sparrow cert` bootstraps a cluster CA and issues node and operator
//! certificates (rcgen), and [`identity_of`] reads who a certificate belongs to.
//!
//! Every certificate Sparrow issues names its holder in a URI subject alternative name,
//! `sparrow://CLUSTER/ROLE/NAME` (`sparrow://example/node/ams`). Peers check the chain to the
//! cluster CA (rustls/webpki) and then this identity: a certificate of another cluster, or an
//! operator certificate presented as a node, is refused even if it chains to the same CA.
//! Certificates from another PKI work as long as they carry such a URI.
//!
//! Node certificates allow TLS server and client authentication (nodes dial each other);
//! operator certificates allow client authentication only.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

pub mod identity;

use self::identity::check_label;
pub use self::identity::{
    Identity, PkiError, Role, SCHEME, ca_cluster, cert_der, identity_of, normalize_serial,
    serial_of,
};

/// Validity of a new CA: ten years, renewed by hand.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Validity of a node or operator certificate: one year.
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

fn validity(params: &mut CertificateParams, not_before: OffsetDateTime, days: u32) {
    params.not_before = not_before;
    params.not_after = not_before + Duration::days(i64::from(days));
}

/// Creates the CA of cluster `cluster`, valid `days` from `not_before`.
pub fn new_ca(cluster: &str, not_before: OffsetDateTime, days: u32) -> Result<Pem, PkiError> {
    check_label(cluster)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Sparrow");
    dn.push(DnType::CommonName, format!("Sparrow cluster {cluster} CA"));
    params.distinguished_name = dn;
    // The CA signs node and operator certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, not_before, days);
    let key = KeyPair::generate().map_err(PkiError::Build)?;
    let cert = params.self_signed(&key).map_err(PkiError::Build)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues a certificate for `id`, signed by `ca`, valid `days` from `not_before`.
/// `extra_names` are added as DNS or IP subject alternative names.
pub fn issue(
    ca: &Pem,
    id: &Identity,
    extra_names: &[String],
    not_before: OffsetDateTime,
    days: u32,
) -> Result<Pem, PkiError> {
    check_label(&id.cluster)?;
    check_label(&id.name)?;
    let ca_key = KeyPair::from_pem(&ca.key).map_err(PkiError::BadCa)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(PkiError::BadCa)?;
    let mut names = vec![id.name.clone()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(PkiError::Build)?;
    let uri = id.uri().try_into().map_err(PkiError::Build)?;
    params.subject_alt_names.push(SanType::URI(uri));
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        format!("Sparrow cluster {}", id.cluster),
    );
    dn.push(
        DnType::CommonName,
        format!("{} {}", id.role.as_str(), id.name),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match id.role {
        Role::Node => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Operator => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, not_before, days);
    let key = KeyPair::generate().map_err(PkiError::Build)?;
    let cert = params.signed_by(&key, &issuer).map_err(PkiError::Build)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Writes `pem` as `STEM.pem` and `STEM.key` in `dir` (created if missing). Refuses to
/// overwrite either file; the key is readable by its owner only.
pub fn write_pair(dir: &Path, stem: &str, pem: &Pem) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists; not overwriting it", p.display()),
            ));
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&key_path)?.write_all(pem.key.as_bytes())?;
    std::fs::write(&cert_path, &pem.cert)?;
    Ok((cert_path, key_path))
}

/// Reads `STEM.pem` and `STEM.key` from `dir`.
pub fn read_pair(dir: &Path, stem: &str) -> std::io::Result<Pem> {
    Ok(Pem {
        cert: std::fs::read_to_string(dir.join(format!("{stem}.pem")))?,
        key: std::fs::read_to_string(dir.join(format!("{stem}.key")))?,
    })
}

#[cfg(test)]
mod tests;
