//! TLS for `etcds://`: the servers are verified (name and chain) against
//! the CA file of `?cacert=` (or `ETCDCTL_CACERT`), else the system's
//! root certificates; a client certificate (`?cert=` and `?key=`) is
//! shown when the cluster asks for one (`--client-cert-auth`). rustls with
//! ring: no system library. Loaded only when a URL asks for TLS.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use crate::etcd::error::EtcdError;
use crate::etcd::target::Target;

/// The TLS settings of `target`'s client (none for `etcd://`).
pub(crate) fn config(target: &Target) -> Result<TlsConfig, EtcdError> {
    if !target.tls {
        return Ok(TlsConfig::default());
    }
    let error = |reason: String| EtcdError::TlsFiles {
        cluster: target.cluster().to_owned(),
        reason,
    };
    let roots = match &target.cacert {
        Some(path) => certificates(path, "CA file (cacert)").map_err(error)?,
        None => system_roots().map_err(error)?,
    };
    let mut builder = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(roots)));
    if let (Some(cert), Some(key)) = (&target.cert, &target.key) {
        let chain = certificates(cert, "certificate file (cert)").map_err(error)?;
        let key = private_key(key).map_err(error)?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

fn certificates(path: &Path, what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) =
            item.map_err(|e| format!("{what} {}: {e}", path.display()))?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKey<'static>, String> {
    let what = |why: String| format!("key file (key) {}: {why}", path.display());
    let pem = std::fs::read(path).map_err(|e| what(e.to_string()))?;
    PrivateKey::from_pem(&pem).map_err(|e| what(format!("{e} (an encrypted key is not supported)")))
}

fn system_roots() -> Result<Vec<Certificate<'static>>, String> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(
            "no system root certificates could be loaded: name the cluster's CA with \
             ?cacert=PATH (or ETCDCTL_CACERT), or install them (apt-get install -y \
             ca-certificates)"
                .into(),
        );
    }
    Ok(found
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect())
}
