//! Certificates for a test member with TLS: a private authority; a server
//! certificate it signs for `localhost` and 127.0.0.1 (what a client dials);
//! client certificates it signs for [`ROOT_USER`](crate::ROOT_USER) and
//! [`USER`](crate::USER) (with `--client-cert-auth` and auth on, etcd takes a
//! client's user name from its certificate's common name); and a second,
//! unrelated authority with a client certificate of its own, which the
//! member must refuse.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::{ROOT_USER, USER};

/// Where the files of a TLS test member are (all PEM; keys mode 0600).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The authority that signed the server's and the clients' certificates.
    pub ca: PathBuf,
    /// An authority that signed nothing the member trusts or shows.
    pub other_ca: PathBuf,
    /// The server's certificate, for `localhost` and 127.0.0.1.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate with the common name [`ROOT_USER`].
    pub root_cert: PathBuf,
    /// Its key.
    pub root_key: PathBuf,
    /// A client certificate with the common name [`USER`].
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A client certificate for [`USER`] signed by the other authority.
    pub stranger_cert: PathBuf,
    /// Its key.
    pub stranger_key: PathBuf,
}

/// The host name the server certificate is for (beside 127.0.0.1).
pub const SERVER_NAME: &str = "localhost";

/// Writes the files into `dir`.
pub(crate) fn write(dir: &Path) -> TlsFiles {
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        root_cert: dir.join("root.crt"),
        root_key: dir.join("root.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        stranger_cert: dir.join("stranger.crt"),
        stranger_key: dir.join("stranger.key"),
    };
    let ca = Authority::new("withlock etcd test authority", &files.ca);
    let other = Authority::new("withlock unrelated authority", &files.other_ca);
    let mut server = CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("server params");
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    ca.sign(server, &files.server_cert, &files.server_key);
    ca.sign(client(ROOT_USER), &files.root_cert, &files.root_key);
    ca.sign(client(USER), &files.client_cert, &files.client_key);
    other.sign(client(USER), &files.stranger_cert, &files.stranger_key);
    files
}

/// A certificate authority whose certificate is written out.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str, cert: &Path) -> Authority {
        let key = KeyPair::generate().expect("authority key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("authority params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let self_signed = params.self_signed(&key).expect("self-sign the authority");
        std::fs::write(cert, self_signed.pem()).expect("write an authority certificate");
        Authority {
            issuer: Issuer::new(params, key),
        }
    }

    /// Signs `params` for a new key; writes the certificate and the key.
    fn sign(&self, params: CertificateParams, cert: &Path, key: &Path) {
        let pair = KeyPair::generate().expect("a key");
        let signed = params
            .signed_by(&pair, &self.issuer)
            .expect("sign a certificate");
        std::fs::write(cert, signed.pem()).expect("write a certificate");
        std::fs::write(key, pair.serialize_pem()).expect("write a key");
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).expect("chmod a key");
    }
}

/// A client certificate's parameters: the user name is its common name.
fn client(user: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, user);
    params
}
