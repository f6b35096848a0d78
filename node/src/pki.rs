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

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// URI scheme of certificate identities.
pub const SCHEME: &str = "sparrow";
/// Validity of a new CA: ten years, renewed by hand.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Validity of a node or operator certificate: one year.
pub const DEFAULT_CERT_DAYS: u32 = 365;

/// What a certificate holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A Sparrow node: joins the gossip, serves peers.
    Node,
    /// An operator: drives a node through its API.
    Operator,
}

impl Role {
    /// `node` or `operator`, as in the identity.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Operator => "operator",
        }
    }
}

/// Who a certificate belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The cluster id.
    pub cluster: String,
    /// Node or operator.
    pub role: Role,
    /// Node (POP) or operator name.
    pub name: String,
}

impl Identity {
    /// The identity as the URI stored in the certificate.
    pub fn uri(&self) -> String {
        format!(
            "{SCHEME}://{}/{}/{}",
            self.cluster,
            self.role.as_str(),
            self.name
        )
    }

    /// Parses `sparrow://CLUSTER/ROLE/NAME`.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(SCHEME)?.strip_prefix("://")?;
        let mut parts = rest.split('/');
        let (cluster, role, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || check_label(cluster).is_err() || check_label(name).is_err() {
            return None;
        }
        let role = match role {
            "node" => Role::Node,
            "operator" => Role::Operator,
            _ => return None,
        };
        Some(Self {
            cluster: cluster.to_owned(),
            role,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A cluster or holder name that is not a DNS label.
    #[error("`{0}` must be 1-63 lower-case letters, digits or `-`")]
    BadName(String),
    /// The CA files do not hold a usable CA.
    #[error("the CA certificate or key cannot be used: {0}")]
    BadCa(#[source] rcgen::Error),
    /// rcgen refused to build the certificate.
    #[error("cannot build the certificate: {0}")]
    Build(#[source] rcgen::Error),
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Parse(String),
    /// The certificate carries no `sparrow://` identity.
    #[error("the certificate names no sparrow:// identity")]
    NoIdentity,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

fn check_label(s: &str) -> Result<(), PkiError> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::BadName(s.to_owned()))
    }
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

/// The `sparrow://` identity of a DER certificate.
pub fn identity_of(cert_der: &[u8]) -> Result<Identity, PkiError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Parse(e.to_string()))?
        .ok_or(PkiError::NoIdentity)?;
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            GeneralName::URI(uri) => Identity::parse(uri),
            _ => None,
        })
        .ok_or(PkiError::NoIdentity)
}

/// The DER bytes of the first certificate in PEM text.
pub fn cert_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(block.contents)
}

/// The cluster id of a CA made by [`new_ca`] (from its common name).
pub fn ca_cluster(ca_cert_pem: &str) -> Result<String, PkiError> {
    let der = cert_der(ca_cert_pem)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse(e.to_string()))?;
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .find_map(|cn| cn.strip_prefix("Sparrow cluster ")?.strip_suffix(" CA"))
        .map(str::to_owned)
        .ok_or_else(|| PkiError::Parse("not a CA made by `sparrow cert ca`; pass --cluster".into()))
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
