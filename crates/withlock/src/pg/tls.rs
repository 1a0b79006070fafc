//! TLS for lock sessions, with libpq's `sslmode` meanings, on rustls (pure
//! Rust, the `ring` provider: no system OpenSSL needed to build or run).
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | if the server agrees, else plain | only if a root certificate is known (below) |
//! | `require` | always | only if a root certificate is known (below) |
//! | `verify-ca` | always | chain to a trusted root |
//! | `verify-full` | always | chain, and the host name (or IP address) |
//!
//! The roots are `sslrootcert` (a PEM file), else `~/.postgresql/root.crt`
//! when it exists; as in libpq, a known root makes `prefer` and `require`
//! check the chain too. `sslrootcert=system` means the system's roots
//! (`/etc/ssl/certs`, `SSL_CERT_FILE`) and, as in libpq 16, defaults
//! `sslmode` to `verify-full` and refuses weaker modes: anyone can get a
//! certificate from a public CA for a host name they control.
//! `verify-ca`/`verify-full` without any root are refused, as libpq does.
//!
//! A client certificate is `sslcert` and `sslkey` (PEM), else
//! `~/.postgresql/postgresql.crt` and `.key` when they exist; the key must
//! not be readable by group or others (`0640` is accepted when root owns
//! it), as in libpq; encrypted keys are not supported.
//!
//! Differences from libpq, all towards refusing: a `sslrootcert`,
//! `sslcert` or `sslkey` that is named but missing is an error (libpq goes
//! on without it), and `allow` tries TLS first (like `prefer`). Over a Unix
//! socket there is no TLS, whatever `sslmode` says, as in libpq.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::SslMode as DriverSslMode;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server agrees (libpq tries plain first; withlock TLS
    /// first, as for `Prefer`).
    Allow,
    /// TLS if the server agrees.
    Prefer,
    /// TLS always.
    Require,
    /// TLS, with the certificate chain checked.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Reads a `sslmode` value.
    pub(crate) fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(format!(
                    "unknown sslmode {value:?} (expected disable, allow, prefer, require, \
                     verify-ca or verify-full)"
                ));
            }
        })
    }

    /// The value as written in a URL.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// The TLS settings of a connection string (or the `PGSSL*` variables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// `sslmode`, if given.
    pub mode: Option<SslMode>,
    /// `sslrootcert`: a file, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert`.
    pub cert: Option<PathBuf>,
    /// `sslkey`.
    pub key: Option<PathBuf>,
}

/// What connecting needs: the driver's mode and, unless TLS is off, the
/// connector.
#[derive(Clone)]
pub(crate) struct Tls {
    /// `Disable`, `Prefer` or `Require`: the verify modes are `Require`
    /// with a checking connector.
    pub driver_mode: DriverSslMode,
    /// Absent when TLS is off.
    pub connector: Option<MakeRustlsConnect>,
}

impl Tls {
    /// No TLS (Unix sockets, `sslmode=disable`).
    pub(crate) fn off() -> Tls {
        Tls {
            driver_mode: DriverSslMode::Disable,
            connector: None,
        }
    }
}

/// Where certificate files are looked for by default: `~/.postgresql`.
fn default_file(home: Option<&Path>, name: &str) -> Option<PathBuf> {
    home.map(|home| home.join(".postgresql").join(name))
}

/// Builds the TLS setup `options` ask for; `home` is where
/// `~/.postgresql` is. The error is one line naming the cause and the fix.
pub(crate) fn prepare(options: &TlsOptions, home: Option<&Path>) -> Result<Tls, String> {
    let system = options.root_cert.as_deref() == Some("system");
    let mode = match options.mode {
        Some(mode) => mode,
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if mode == SslMode::Disable {
        return Ok(Tls::off());
    }
    if system && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslrootcert=system needs sslmode=verify-full (sslmode is {}): anyone can get \
             a certificate from a public authority for a host name of their own",
            mode.name()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = roots(options, mode, home)?;
    let verifier = verifier(mode, roots, &provider)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_identity(options, home)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("unusable client certificate or key: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    let driver_mode = match mode {
        SslMode::Allow | SslMode::Prefer => DriverSslMode::Prefer,
        _ => DriverSslMode::Require,
    };
    Ok(Tls {
        driver_mode,
        connector: Some(MakeRustlsConnect::new(config)),
    })
}

/// The trusted roots, if any are known.
fn roots(
    options: &TlsOptions,
    mode: SslMode,
    home: Option<&Path>,
) -> Result<Option<RootCertStore>, String> {
    match options.root_cert.as_deref() {
        Some("system") => system_roots().map(Some),
        Some(path) => file_roots(Path::new(path)).map(Some),
        None => match default_file(home, "root.crt") {
            Some(path) if path.exists() => file_roots(&path).map(Some),
            path if mode.verifies() => Err(format!(
                "sslmode={} needs a root certificate and {} does not exist: name one with \
                 sslrootcert=FILE, use the system's roots with sslrootcert=system, or choose \
                 sslmode=require to encrypt without checking the server",
                mode.name(),
                path.map_or("~/.postgresql/root.crt".into(), |p| p.display().to_string())
            )),
            _ => Ok(None),
        },
    }
}

fn file_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = pem_certs(path, "root certificate file (sslrootcert)")?;
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| format!("root certificate in {}: {e}", path.display()))?;
    }
    Ok(store)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        let why = found
            .errors
            .first()
            .map_or("none found".to_owned(), |e| e.to_string());
        return Err(format!(
            "sslrootcert=system: no system root certificates could be loaded ({why}): install \
             them (apt-get install -y ca-certificates) or name a file with sslrootcert=FILE"
        ));
    }
    Ok(store)
}

/// Every certificate in the PEM file at `path`; none is an error.
fn pem_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn verifier(
    mode: SslMode,
    roots: Option<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let algorithms = provider.signature_verification_algorithms;
    Ok(match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("TLS setup failed: {e}"))?
        }
        (_, roots) => Arc::new(NameUnchecked {
            roots: roots.map(Arc::new),
            algorithms,
        }),
    })
}

/// The client certificate chain and key, if there is one.
type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(
    options: &TlsOptions,
    home: Option<&Path>,
) -> Result<Option<ClientIdentity>, String> {
    let cert_path = match (&options.cert, default_file(home, "postgresql.crt")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) if path.exists() => path,
        _ => return Ok(None),
    };
    let chain = pem_certs(&cert_path, "client certificate file (sslcert)")?;
    let key_path = options
        .key
        .clone()
        .or_else(|| default_file(home, "postgresql.key"))
        .ok_or_else(|| {
            format!(
                "client certificate {} has no key: name it with sslkey=FILE",
                cert_path.display()
            )
        })?;
    Ok(Some((chain, private_key(&key_path)?)))
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let what = |why: String| format!("private key file (sslkey) {}: {why}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| what(e.to_string()))?;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if meta.mode() & 0o777 & !allowed != 0 {
        return Err(what(format!(
            "has group or world access (mode {:04o}): make it 0600 (or 0640 owned by root)",
            meta.mode() & 0o7777
        )));
    }
    let pem = std::fs::read(path).map_err(|e| what(e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        what(format!(
            "{e} (an encrypted key is not supported: decrypt it with `openssl pkey`)"
        ))
    })
}

/// `verify-ca`, and `prefer`/`require` with a known root: the chain must
/// lead to a trusted root; the name in the certificate is not looked at.
/// Without a root (`prefer`/`require`, as libpq) any certificate is
/// accepted. Either way the handshake signatures are checked, so the peer
/// holds the key of the certificate it showed.
#[derive(Debug)]
struct NameUnchecked {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: &str, root: Option<&str>) -> TlsOptions {
        TlsOptions {
            mode: Some(SslMode::parse(mode).unwrap()),
            root_cert: root.map(str::to_owned),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn every_libpq_mode_is_read_and_others_refused() {
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            SslMode::parse(mode).unwrap();
        }
        let err = SslMode::parse("verify_full").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
    }

    #[test]
    fn the_driver_is_told_require_for_every_encrypting_mode() {
        let home = tempfile::tempdir().unwrap();
        let mode = |m| prepare(&options(m, None), Some(home.path())).unwrap();
        assert_eq!(mode("disable").driver_mode, DriverSslMode::Disable);
        assert!(mode("disable").connector.is_none());
        assert_eq!(mode("prefer").driver_mode, DriverSslMode::Prefer);
        assert_eq!(mode("allow").driver_mode, DriverSslMode::Prefer);
        assert_eq!(mode("require").driver_mode, DriverSslMode::Require);
        let default = prepare(&TlsOptions::default(), Some(home.path())).unwrap();
        assert_eq!(default.driver_mode, DriverSslMode::Prefer);
    }

    #[test]
    fn verify_modes_without_a_root_are_refused_with_the_fix() {
        let home = tempfile::tempdir().unwrap();
        for mode in ["verify-ca", "verify-full"] {
            let Err(err) = prepare(&options(mode, None), Some(home.path())) else {
                panic!("{mode} accepted without a root")
            };
            assert!(err.contains("root.crt does not exist"), "{err}");
            assert!(err.contains("sslrootcert="), "{err}");
        }
    }

    #[test]
    fn a_named_root_file_that_is_missing_or_empty_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pem");
        let Err(err) = prepare(&options("require", Some(missing.to_str().unwrap())), None) else {
            panic!("accepted")
        };
        assert!(err.contains("none.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let Err(err) = prepare(&options("verify-ca", Some(empty.to_str().unwrap())), None) else {
            panic!("accepted")
        };
        assert!(err.contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn system_roots_need_verify_full() {
        let err = prepare(&options("require", Some("system")), None)
            .err()
            .unwrap();
        assert!(err.contains("verify-full"), "{err}");
        let defaulted = TlsOptions {
            root_cert: Some("system".into()),
            ..TlsOptions::default()
        };
        // Defaults to verify-full: either it loads the roots, or it says
        // how to install them.
        match prepare(&defaulted, None) {
            Ok(tls) => assert_eq!(tls.driver_mode, DriverSslMode::Require),
            Err(err) => assert!(err.contains("ca-certificates"), "{err}"),
        }
    }

    #[test]
    fn a_named_client_certificate_that_is_missing_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let tls = TlsOptions {
            cert: Some(home.path().join("client.crt")),
            ..options("require", None)
        };
        let Err(err) = prepare(&tls, Some(home.path())) else {
            panic!("accepted")
        };
        assert!(err.contains("client.crt"), "{err}");
    }
}
