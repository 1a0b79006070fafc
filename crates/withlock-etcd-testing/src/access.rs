//! How clients reach a member: plain or TLS (with or without client
//! certificates), and as whom. The server's flags and `etcdctl`'s come
//! from the same settings, so they cannot disagree.

use std::ffi::OsString;
use std::process::Command;

use crate::binaries::{DEFAULT_ETCDCTL, clean_env};
use crate::tls::TlsFiles;

/// A member's transport security and the credentials `etcdctl` uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    tls: Option<TlsFiles>,
    client_certs: bool,
    login: Option<(String, String)>,
}

impl Access {
    /// Plain TCP, no auth.
    pub(crate) fn plain() -> Access {
        Access::default()
    }

    /// TLS with `files`; `client_certs` makes the member demand a client
    /// certificate signed by its authority.
    pub(crate) fn tls(files: TlsFiles, client_certs: bool) -> Access {
        Access {
            tls: Some(files),
            client_certs,
            login: None,
        }
    }

    /// The same, with `etcdctl` logging in as `user`.
    pub(crate) fn logged_in(&self, user: &str, password: &str) -> Access {
        Access {
            login: Some((user.to_owned(), password.to_owned())),
            ..self.clone()
        }
    }

    pub(crate) fn http_scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub(crate) fn url_scheme(&self) -> &'static str {
        if self.tls.is_some() { "etcds" } else { "etcd" }
    }

    /// The server's TLS flags.
    pub(crate) fn server_args(&self) -> Vec<OsString> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let mut args: Vec<OsString> = vec![
            "--cert-file".into(),
            tls.server_cert.clone().into(),
            "--key-file".into(),
            tls.server_key.clone().into(),
        ];
        if self.client_certs {
            args.extend([
                "--client-cert-auth".into(),
                "--trusted-ca-file".into(),
                tls.ca.clone().into(),
            ]);
        }
        args
    }

    /// `etcdctl` (API 3) for `endpoints`, with the TLS files and login of
    /// this access. With client certificates it shows the certificate of
    /// its login user ([`USER`](crate::USER)'s for that user, root's
    /// otherwise).
    pub(crate) fn etcdctl(&self, endpoints: &[String]) -> Command {
        let mut command = Command::new(DEFAULT_ETCDCTL);
        clean_env(&mut command);
        command.env("ETCDCTL_API", "3");
        let scheme = self.http_scheme();
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|endpoint| format!("{scheme}://{endpoint}"))
            .collect();
        command.arg(format!("--endpoints={}", endpoints.join(",")));
        if let Some(tls) = &self.tls {
            command.arg("--cacert").arg(&tls.ca);
            if self.client_certs {
                let as_user = self
                    .login
                    .as_ref()
                    .is_some_and(|(user, _)| user == crate::USER);
                let (cert, key) = if as_user {
                    (&tls.client_cert, &tls.client_key)
                } else {
                    (&tls.root_cert, &tls.root_key)
                };
                command.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        if let Some((user, password)) = &self.login {
            command.arg(format!("--user={user}"));
            command.arg(format!("--password={password}"));
        }
        command
    }
}
