//! [P] Who a certificate belongs to: the `sparrow://CLUSTER/ROLE/NAME` identity in its subject
//! alternative name, and its serial number (what revocation lists name). Parsing only; making
//! certificates is in [`super`].

use std::fmt;

/// URI scheme of certificate identities.
pub const SCHEME: &str = "sparrow";
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

pub(crate) fn check_label(s: &str) -> Result<(), PkiError> {
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

/// The serial number of a DER certificate, as revocation lists name it: lower-case hex,
/// without separators or leading zeros (`3fa9...`).
pub fn serial_of(cert_der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(normalize_serial(
        &cert.tbs_certificate.raw_serial_as_string(),
    ))
}

/// A serial number written any common way (`3F:A9`, `0x3fa9`, `003FA9`) in the form of
/// [`serial_of`]; `None` if it is not hex.
pub fn normalize_serial(text: &str) -> String {
    let hex: String = text
        .trim()
        .trim_start_matches("0x")
        .trim_start_matches("0X")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The DER bytes of the first certificate in PEM text.
pub fn cert_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(block.contents)
}

/// The cluster id of a CA made by [`super::new_ca`] (from its common name).
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
