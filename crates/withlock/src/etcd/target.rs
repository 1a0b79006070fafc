//! `Target`: an etcd URL read into the cluster's endpoints, the key prefix
//! and how to authenticate.
//!
//! Grammar (README, "Locks on an etcd cluster"):
//!
//! ```text
//! etcd://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...][/PREFIX][?OPTION=VALUE&...]
//! etcds://...   (TLS)
//! ```
//!
//! - HOST is a name, an IPv4 address or `[IPv6]`; PORT defaults to 2379.
//! - PREFIX (percent-decoded) goes in front of every lock name, with a
//!   `/`: the lock `deploy` under `/ci` is etcd's lock prefix `ci/deploy/`.
//! - Options: `cacert=PATH` (CA to verify the servers, else the system's),
//!   `cert=PATH` and `key=PATH` (a client certificate; TLS only),
//!   `password-file=PATH` (the password on the file's first line).
//! - Missing pieces come from etcdctl's variables: `ETCDCTL_USER` (`USER`
//!   or `USER:PASSWORD`), `ETCDCTL_PASSWORD`, `ETCDCTL_CACERT`,
//!   `ETCDCTL_CERT`, `ETCDCTL_KEY`.
//!
//! The password is kept out of every message: [`Target::cluster`] names
//! the endpoints and prefix only.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use crate::etcd::error::EtcdError;

/// etcd's client port.
pub const DEFAULT_PORT: u16 = 2379;

/// Where an etcd lock lives and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` of each member to try, in the URL's order.
    pub(crate) endpoints: Vec<String>,
    /// Put before every lock name (with a `/`), empty for none.
    pub(crate) prefix: String,
    /// `etcds://`: HTTPS to every endpoint.
    pub(crate) tls: bool,
    pub(crate) cacert: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<Password>,
    /// The cluster as messages name it (no user, no password).
    cluster: String,
}

/// A password, kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Password(pub(crate) String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("cluster", &self.cluster)
            .field("user", &self.user)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// True when `url` is an etcd URL (`etcd://` or `etcds://`), whatever
/// else it says: the scheme chooses the kind of server lock.
pub fn is_etcd_url(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("etcd" | "etcds"))
}

/// True when `url` carries a password itself (`USER:PASSWORD@`), which a
/// command line must not: every local user can read it with ps.
pub fn gives_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| authority(rest))
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The part of the URL after `scheme://` up to the path or query.
fn authority(rest: &str) -> &str {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    &rest[..end]
}

impl Target {
    /// Reads `url`, completing it from etcdctl's variables.
    pub fn parse(url: &str) -> Result<Target, EtcdError> {
        Target::parse_with(url, &|name| std::env::var(name).ok())
    }

    fn parse_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, EtcdError> {
        let bad = |reason: &str| EtcdError::BadUrl {
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("an etcd URL starts with etcd:// or etcds://"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "etcd" => false,
            "etcds" => true,
            _ => return Err(bad("an etcd URL starts with etcd:// or etcds://")),
        };
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, path) = before_query.split_once('/').unwrap_or((before_query, ""));
        let (userinfo, hosts) = match hosts.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, hosts),
        };
        let endpoints = hosts
            .split(',')
            .map(endpoint)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| bad(&reason))?;
        let prefix = decode(path.trim_matches('/')).map_err(|reason| bad(&reason))?;
        let mut target = Target {
            cluster: cluster_name(tls, &endpoints, &prefix),
            endpoints,
            prefix,
            tls,
            cacert: None,
            cert: None,
            key: None,
            user: None,
            password: None,
        };
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            target.user = Some(decode(user).map_err(|reason| bad(&reason))?);
            target.password = password
                .map(decode)
                .transpose()
                .map_err(|reason| bad(&reason))?
                .map(Password);
        }
        if target.user.as_deref() == Some("") {
            return Err(bad(
                "the user name before @ is empty: name a user or drop the @",
            ));
        }
        target.read_query(query)?;
        target.complete_from(env)?;
        if !tls && (target.cacert.is_some() || target.cert.is_some() || target.key.is_some()) {
            return Err(bad("cacert, cert and key are for TLS: use etcds://"));
        }
        if target.cert.is_some() != target.key.is_some() {
            return Err(bad("a client certificate needs both cert= and key="));
        }
        Ok(target)
    }

    fn read_query(&mut self, query: &str) -> Result<(), EtcdError> {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value).map_err(|reason| EtcdError::BadUrl { reason })?;
            if value.is_empty() {
                return Err(EtcdError::BadUrl {
                    reason: format!("the option {name} needs a value: {name}=PATH"),
                });
            }
            let path = Some(PathBuf::from(&value));
            match name {
                "cacert" => self.cacert = path,
                "cert" => self.cert = path,
                "key" => self.key = path,
                "password-file" => self.password = Some(read_password_file(&value)?),
                _ => {
                    return Err(EtcdError::BadUrl {
                        reason: format!(
                            "unknown option {:?}: an etcd URL takes cacert, cert, key and \
                             password-file",
                            crate::escape::text(name)
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// etcdctl's variables fill in what the URL left out.
    fn complete_from(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), EtcdError> {
        if self.user.is_none() {
            if let Some(user) = env("ETCDCTL_USER").filter(|u| !u.is_empty()) {
                match user.split_once(':') {
                    Some((user, password)) => {
                        self.user = Some(user.to_owned());
                        if self.password.is_none() {
                            self.password = Some(Password(password.to_owned()));
                        }
                    }
                    None => self.user = Some(user),
                }
            }
        }
        if self.user.is_some() && self.password.is_none() {
            self.password = env("ETCDCTL_PASSWORD").map(Password);
        }
        for (slot, name) in [
            (&mut self.cacert, "ETCDCTL_CACERT"),
            (&mut self.cert, "ETCDCTL_CERT"),
            (&mut self.key, "ETCDCTL_KEY"),
        ] {
            // Only for TLS: a variable set for other clusters does not
            // make a plain etcd:// URL wrong.
            if self.tls && slot.is_none() {
                *slot = env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
            }
        }
        if self.user.is_some() && self.password.is_none() {
            return Err(EtcdError::BadUrl {
                reason: "a user needs a password: set ETCDCTL_PASSWORD or add \
                         ?password-file=PATH to the URL"
                    .into(),
            });
        }
        Ok(())
    }

    /// The cluster as messages name it: `etcd://HOST:PORT,.../PREFIX`,
    /// without user or password.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The key prefix of the lock `name`: etcd's lock prefix, the keys of
    /// its holders and waiters are under it (`[PREFIX/]NAME/`).
    pub fn lock_prefix(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("{name}/")
        } else {
            format!("{}/{name}/", self.prefix)
        }
    }

    /// The prefix every lock of this URL lives under: `PREFIX/`, or empty.
    pub(crate) fn key_space(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

fn cluster_name(tls: bool, endpoints: &[String], prefix: &str) -> String {
    let scheme = if tls { "etcds" } else { "etcd" };
    let mut name = format!("{scheme}://{}", endpoints.join(","));
    if !prefix.is_empty() {
        name.push('/');
        name.push_str(prefix);
    }
    name
}

/// `HOST[:PORT]` checked and completed with the default port.
fn endpoint(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an endpoint is empty: give HOST:PORT, several separated by commas".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: an IPv6 address ends with ]"))?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (text.to_owned(), None),
        }
    };
    let valid_host = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || !bare.chars().all(valid_host) {
        return Err(format!(
            "{:?} is not a host: give a name or an address",
            crate::escape::text(&host)
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a port: give a number from 1 to 65535",
                    crate::escape::text(port)
                )
            })?,
    };
    Ok(format!("{host}:{port}"))
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "the URL's percent-encoding is not UTF-8".into())
}

fn read_password_file(path: &str) -> Result<Password, EtcdError> {
    let text = std::fs::read_to_string(path).map_err(|cause| EtcdError::PasswordFile {
        path: path.into(),
        cause,
    })?;
    Ok(Password(text.lines().next().unwrap_or("").to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, String> {
        Target::parse_with(url, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_endpoints_prefix_and_scheme() {
        let t = parse("etcd://a:1,b,[::1]:3/ci/locks").unwrap();
        assert_eq!(t.endpoints, ["a:1", "b:2379", "[::1]:3"]);
        assert_eq!(t.prefix, "ci/locks");
        assert!(!t.tls);
        assert_eq!(t.lock_prefix("deploy"), "ci/locks/deploy/");
        assert_eq!(t.cluster(), "etcd://a:1,b:2379,[::1]:3/ci/locks");
        let t = parse("etcds://127.0.0.1:2379?cacert=/ca.pem").unwrap();
        assert!(t.tls);
        assert_eq!(t.lock_prefix("deploy"), "deploy/");
        assert_eq!(t.cacert, Some(PathBuf::from("/ca.pem")));
    }

    #[test]
    fn refuses_what_is_not_an_etcd_url() {
        for (url, says) in [
            ("127.0.0.1:2379", "starts with etcd://"),
            ("http://a:1", "starts with etcd://"),
            ("etcd://", "endpoint is empty"),
            ("etcd://a:1,", "endpoint is empty"),
            ("etcd://a:x", "not a port"),
            ("etcd://a:0", "not a port"),
            ("etcd://a:70000", "not a port"),
            ("etcd://a b:1", "not a host"),
            ("etcd://[::1:1", "ends with ]"),
            ("etcd://a:1?cacert=/x", "use etcds://"),
            ("etcds://a:1?cert=/x", "both cert= and key="),
            ("etcds://a:1?bogus=1", "unknown option"),
            ("etcds://a:1?cacert=", "needs a value"),
            ("etcd://bob@a:1", "needs a password"),
            ("etcd://@a:1", "user name before @ is empty"),
        ] {
            let err = parse(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let t = parse("etcd://bob:s3cr3t@a:1/p").unwrap();
        assert_eq!(t.user.as_deref(), Some("bob"));
        assert_eq!(t.password, Some(Password("s3cr3t".into())));
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!t.cluster().contains("s3cr3t"));
        assert!(gives_password("etcd://bob:s3cr3t@a:1/p"));
        assert!(!gives_password("etcd://bob@a:1/p?password-file=/x"));
        assert!(!gives_password("etcd://a:1/x:y@z"));
    }

    #[test]
    fn etcdctl_variables_fill_in() {
        let env = |name: &str| match name {
            "ETCDCTL_USER" => Some("ci:pw".to_owned()),
            "ETCDCTL_CACERT" => Some("/ca".to_owned()),
            _ => None,
        };
        let t = Target::parse_with("etcds://a", &env).unwrap();
        assert_eq!(t.user.as_deref(), Some("ci"));
        assert_eq!(t.password, Some(Password("pw".into())));
        assert_eq!(t.cacert, Some(PathBuf::from("/ca")));
        assert!(is_etcd_url("ETCDS://x") && !is_etcd_url("postgres://x"));
    }
}
