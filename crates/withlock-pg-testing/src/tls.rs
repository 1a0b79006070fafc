//! Certificates for a test server with TLS: a private authority, a server
//! certificate it signs for the name `localhost` only (so that connecting
//! to 127.0.0.1 passes `verify-ca` but fails `verify-full`), and a second,
//! unrelated authority that signed nothing the server shows.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Where the files of a TLS test server are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The authority that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// An authority that signed nothing the server shows (PEM).
    pub other_ca: PathBuf,
    /// The server's certificate, for `localhost` (PEM).
    pub server_cert: PathBuf,
    /// The server's key (PEM, mode 0600, owned by the server user).
    pub server_key: PathBuf,
}

/// The name the server certificate is for.
pub const SERVER_NAME: &str = "localhost";

/// Writes the files into `dir`; the key is given to `uid`/`gid`.
pub(crate) fn write(dir: &Path, uid: u32, gid: u32) -> TlsFiles {
    let (ca_params, ca_key) = authority("withlock test authority");
    let issuer = Issuer::new(ca_params.clone(), ca_key);
    let (other_params, other_key) = authority("withlock unrelated authority");
    let server_key = KeyPair::generate().expect("server key");
    let mut server_params =
        CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("server params");
    server_params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("sign the server certificate");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    let ca_cert = ca_params
        .self_signed(issuer.key())
        .expect("self-sign the authority");
    let other_cert = other_params
        .self_signed(&other_key)
        .expect("self-sign the other authority");
    std::fs::write(&files.ca, ca_cert.pem()).expect("write ca.pem");
    std::fs::write(&files.other_ca, other_cert.pem()).expect("write other-ca.pem");
    std::fs::write(&files.server_cert, server_cert.pem()).expect("write server.crt");
    std::fs::write(&files.server_key, server_key.serialize_pem()).expect("write server.key");
    // The server refuses a key that others can read.
    std::fs::set_permissions(&files.server_key, std::fs::Permissions::from_mode(0o600))
        .expect("chmod server.key");
    for file in [
        &files.ca,
        &files.other_ca,
        &files.server_cert,
        &files.server_key,
    ] {
        std::os::unix::fs::chown(file, Some(uid), Some(gid)).expect("chown a TLS file");
    }
    files
}

fn authority(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("authority key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("authority params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, key)
}
