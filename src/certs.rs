//! Self-signed certificates for local HTTPS (`tiklive gen-cert`): a certificate and its private key
//! valid for this machine's loopback names and any LAN name or address, so that a phone on the same
//! network can reach `serve` over HTTPS once it trusts the certificate.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

/// Names every certificate covers, before those the user adds.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0:?} is not a valid host name or IP address for a certificate")]
    BadName(String),
    #[error("--days must be between 1 and 3650, not {0}")]
    BadDays(u32),
    #[error("{} already exists; --force replaces it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Subject alternative names, in order: the loopback names, then the user's.
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the certificate's DER, as upper-case hex pairs joined by `:`.
    pub sha256: String,
}

/// The request of `gen-cert`.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub out_dir: &'a Path,
    pub hosts: &'a [String],
    pub days: u32,
    pub force: bool,
}

/// Makes an ECDSA P-256 key and a self-signed certificate for the loopback names and `hosts`, and
/// writes `cert.pem` (0644) and `key.pem` (0600) into `out_dir` (created 0700 if missing). Existing
/// files are replaced only with `force`; the key never exists on disk with wider permissions.
pub fn generate(request: &Request<'_>) -> Result<Generated, CertError> {
    if !(1..=3650).contains(&request.days) {
        return Err(CertError::BadDays(request.days));
    }
    let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|n| (*n).to_owned()).collect();
    for host in request.hosts {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let normalised = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host.to_ascii_lowercase(),
        };
        if !names.contains(&normalised) {
            names.push(normalised);
        }
    }
    let sans = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) if is_dns_name(name) => name
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| CertError::BadName(name.clone())),
            Err(_) => Err(CertError::BadName(name.clone())),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let cert_path = request.out_dir.join("cert.pem");
    let key_path = request.out_dir.join("key.pem");
    if !request.force {
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(CertError::Exists(path.clone()));
            }
        }
    }

    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "tiklive local certificate");
    subject.push(DnType::OrganizationName, "tiklive");
    params.distinguished_name = subject;
    // A minute of slack for a phone whose clock is a little behind.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::days(i64::from(request.days));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;

    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| CertError::Write { path, source }
    };
    let mut dir = fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(request.out_dir)
        .map_err(write_err(request.out_dir))?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(write_err(&key_path))?;
    write_file(&cert_path, cert.pem().as_bytes(), 0o644).map_err(write_err(&cert_path))?;

    Ok(Generated {
        cert_path,
        key_path,
        names,
        not_after: params.not_after.unix_timestamp(),
        sha256: fingerprint(cert.der()),
    })
}

/// Writes `bytes` to a new temporary file created with `mode`, then renames it over `path`: the file
/// is never seen half-written, and a key is never readable by others, not even for a moment.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A host name a certificate may carry: labels of letters, digits and hyphens (a leading `*.` for a
/// wildcard), as browsers accept them.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// SHA-256 of `der` as `AB:CD:…`, the form browsers show.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked() {
        for good in ["shop.lan", "my-pc", "*.local.example", "xn--caf-dma.fr"] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a.lan",
            "a b",
            "shop.lan/x",
            "é.fr",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn known_fingerprint() {
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn bad_names_and_days_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let hosts = ["shop lan".to_owned()];
        let err = generate(&Request {
            out_dir: &out,
            hosts: &hosts,
            days: 365,
            force: false,
        })
        .unwrap_err();
        assert!(
            matches!(err, CertError::BadName(ref n) if n == "shop lan"),
            "{err}"
        );
        let err = generate(&Request {
            out_dir: &out,
            hosts: &[],
            days: 0,
            force: false,
        })
        .unwrap_err();
        assert!(matches!(err, CertError::BadDays(0)), "{err}");
        assert!(!out.exists());
    }
}
