//! `tiklive gen-cert` as a user runs it: the files, their modes, what it prints, `--force`, and a TLS
//! handshake against a server using the pair, with the certificate trusted, for every name it covers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn gen_cert(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tiklive"))
        .arg("gen-cert")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Serves one TLS connection with the pair in `dir` on a loopback port and echoes 5 bytes; returns
/// the client's result of connecting to it as `name`, trusting the certificate.
fn handshake(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs[0].clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, socket);
        let mut buf = [0u8; 5];
        if tls.read_exact(&mut buf).is_ok() {
            let _ = tls.write_all(&buf);
            let _ = tls.flush();
        }
    });
    let result = (|| {
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(Arc::new(client), server_name)
            .map_err(|e| e.to_string())?;
        let socket = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, socket);
        tls.write_all(b"hello").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        let mut echo = vec![0u8; 5];
        tls.read_exact(&mut echo).map_err(|e| e.to_string())?;
        Ok(echo)
    })();
    server.join().unwrap();
    result
}

#[test]
fn the_pair_serves_tls_for_every_name_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let out = gen_cert(
        dir.path(),
        &[
            "--host",
            "shop.lan",
            "--host",
            "192.168.1.20",
            "--days",
            "30",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let certs = dir.path().join("certs");
    assert_eq!(mode(&certs.join("key.pem")), 0o600);
    assert_eq!(mode(&certs.join("cert.pem")), 0o644);
    assert_eq!(mode(&certs), 0o700);
    assert!(
        stdout.contains("names: localhost, 127.0.0.1, ::1, shop.lan, 192.168.1.20"),
        "{stdout}"
    );

    // The printed fingerprint is the SHA-256 of the certificate written, and the expiry is 30 days on.
    let der = CertificateDer::from_pem_file(certs.join("cert.pem")).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    assert!(
        stdout.contains(&format!("sha256: {}", hex.join(":"))),
        "{stdout}"
    );
    let expires = stdout
        .lines()
        .find_map(|l| l.strip_prefix("expires: "))
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let in_30_days = tiklive::events::parse_time_arg(expires, 0).unwrap() / 1000;
    assert!(
        (in_30_days - (now as i64 + 30 * 86_400)).abs() < 120,
        "{expires}"
    );

    for name in ["localhost", "127.0.0.1", "shop.lan", "192.168.1.20"] {
        assert_eq!(
            handshake(&certs, name).as_deref(),
            Ok(&b"hello"[..]),
            "{name}"
        );
    }
    let err = handshake(&certs, "evil.example").unwrap_err();
    assert!(
        err.contains("NotValidForName") || err.contains("not valid"),
        "{err}"
    );
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let first = gen_cert(dir.path(), &["--out-dir", "tls", "--json"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let json: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let key = std::fs::read(dir.path().join("tls/key.pem")).unwrap();

    let again = gen_cert(dir.path(), &["--out-dir", "tls"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("tls/key.pem")).unwrap(),
        key,
        "untouched"
    );

    let forced = gen_cert(dir.path(), &["--out-dir", "tls", "--force", "--json"]);
    assert_eq!(forced.status.code(), Some(0));
    let replaced: serde_json::Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_ne!(replaced["sha256"], json["sha256"]);
    assert_ne!(std::fs::read(dir.path().join("tls/key.pem")).unwrap(), key);
    assert_eq!(mode(&dir.path().join("tls/key.pem")), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("tls"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");

    let bad = gen_cert(dir.path(), &["--host", "not a name"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = gen_cert(dir.path(), &["--days", "0"]);
    assert_eq!(bad.status.code(), Some(2));
}
