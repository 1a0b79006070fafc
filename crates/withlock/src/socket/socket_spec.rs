//! Socket lock specs: `tcp:PORT`, `tcp:HOST:PORT`, `unix:PATH` and
//! `abstract:NAME`.
//!
//! A spec is recognised by its prefix alone ([`is_socket_spec`]); where
//! that stands among the other kinds of lock spec is in [`crate::spec`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The longest `sun_path` a Linux Unix socket address holds, without the
/// trailing NUL (path sockets) or the leading NUL (abstract names).
pub const MAX_SOCKET_PATH: usize = 107;

/// The prefixes that make a spec a socket spec.
const PREFIXES: [&str; 3] = ["tcp:", "unix:", "abstract:"];

/// True when `spec` has a socket prefix, so that it is a socket spec
/// whether or not the rest of it is valid.
pub(crate) fn is_socket_spec(spec: &str) -> bool {
    PREFIXES.iter().any(|prefix| spec.starts_with(prefix))
}

/// Where a socket lock lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// A TCP port on a local address (127.0.0.1 unless a host is given).
    Tcp(SocketAddr),
    /// A Unix domain socket file.
    Unix(PathBuf),
    /// A Linux abstract socket name (no file; one per network namespace).
    Abstract(Vec<u8>),
}

impl SocketAddress {
    /// The address named by `spec`, `None` when `spec` is not a socket spec
    /// at all (it is then a lock name or a lock file path).
    pub fn parse(spec: &str) -> Option<Result<SocketAddress>> {
        let invalid = |reason: &'static str| Error::InvalidName {
            name: spec.to_owned(),
            reason,
        };
        if let Some(rest) = spec.strip_prefix("tcp:") {
            return Some(parse_tcp(rest).map_err(invalid));
        }
        if let Some(path) = spec.strip_prefix("unix:") {
            return Some(if path.is_empty() {
                Err(invalid(
                    "unix: needs a socket path, as in unix:/run/lock/deploy.sock",
                ))
            } else if path.len() > MAX_SOCKET_PATH {
                Err(invalid(
                    "a Unix socket path is at most 107 bytes; use a shorter path",
                ))
            } else if path.contains('\0') {
                Err(invalid("a Unix socket path cannot contain a NUL byte"))
            } else {
                Ok(SocketAddress::Unix(PathBuf::from(path)))
            });
        }
        if let Some(name) = spec.strip_prefix("abstract:") {
            return Some(if name.is_empty() {
                Err(invalid("abstract: needs a name, as in abstract:deploy"))
            } else if name.len() > MAX_SOCKET_PATH {
                Err(invalid(
                    "an abstract socket name is at most 107 bytes; use a shorter name",
                ))
            } else if name.contains('\0') {
                Err(invalid("an abstract socket name cannot contain a NUL byte"))
            } else {
                Ok(SocketAddress::Abstract(name.as_bytes().to_vec()))
            });
        }
        None
    }

    /// The kind of socket, as a word: "TCP", "Unix" or "abstract".
    pub fn kind(&self) -> &'static str {
        match self {
            SocketAddress::Tcp(_) => "TCP",
            SocketAddress::Unix(_) => "Unix",
            SocketAddress::Abstract(_) => "abstract",
        }
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketAddress::Tcp(addr) => write!(f, "tcp:{addr}"),
            SocketAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            SocketAddress::Abstract(name) => {
                write!(f, "abstract:{}", String::from_utf8_lossy(name))
            }
        }
    }
}

fn parse_port(text: &str) -> std::result::Result<u16, &'static str> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("a TCP port is a number from 1 to 65535, as in tcp:4711"),
        Ok(port) => Ok(port),
    }
}

fn parse_tcp(rest: &str) -> std::result::Result<SocketAddress, &'static str> {
    if rest.is_empty() {
        return Err("tcp: needs a port, as in tcp:4711 or tcp:127.0.0.1:4711");
    }
    // tcp:PORT
    if !rest.contains(':') {
        let port = parse_port(rest)?;
        return Ok(SocketAddress::Tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
        )));
    }
    // tcp:[V6]:PORT
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, port) = bracketed
            .split_once("]:")
            .ok_or("write an IPv6 host in brackets, as in tcp:[::1]:4711")?;
        let ip: IpAddr = host
            .parse()
            .map_err(|_| "write an IPv6 host in brackets, as in tcp:[::1]:4711")?;
        return Ok(SocketAddress::Tcp(SocketAddr::new(ip, parse_port(port)?)));
    }
    // tcp:HOST:PORT, HOST an IPv4 address or a host name.
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or("write tcp:PORT or tcp:HOST:PORT")?;
    if host.contains(':') {
        return Err("write an IPv6 host in brackets, as in tcp:[::1]:4711");
    }
    let port = parse_port(port)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddress::Tcp(SocketAddr::new(ip, port)));
    }
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(SocketAddress::Tcp)
        .ok_or("the host name does not resolve; use an address of this machine such as 127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Option<Result<SocketAddress>> {
        SocketAddress::parse(spec)
    }

    #[test]
    fn names_and_paths_are_not_socket_specs() {
        for spec in [
            "deploy",
            "./x.lock",
            "/run/lock/x.lock",
            "tcp",
            "unix",
            "x:1",
        ] {
            assert!(parse(spec).is_none(), "{spec}");
        }
    }

    #[test]
    fn a_tcp_port_alone_means_localhost() {
        assert_eq!(
            parse("tcp:4711").unwrap().unwrap(),
            SocketAddress::Tcp("127.0.0.1:4711".parse().unwrap())
        );
    }

    #[test]
    fn a_tcp_host_and_port() {
        assert_eq!(
            parse("tcp:127.0.0.2:80").unwrap().unwrap(),
            SocketAddress::Tcp("127.0.0.2:80".parse().unwrap())
        );
        assert_eq!(
            parse("tcp:[::1]:4711").unwrap().unwrap(),
            SocketAddress::Tcp("[::1]:4711".parse().unwrap())
        );
        assert!(matches!(
            parse("tcp:localhost:4711").unwrap().unwrap(),
            SocketAddress::Tcp(addr) if addr.port() == 4711 && addr.ip().is_loopback()
        ));
    }

    #[test]
    fn bad_tcp_specs_are_invalid_names() {
        for spec in [
            "tcp:",
            "tcp:0",
            "tcp:65536",
            "tcp:x",
            "tcp:-1",
            "tcp:::1:80",
            "tcp:[::1]80",
            "tcp:1.2.3.4:",
        ] {
            assert!(
                matches!(parse(spec), Some(Err(Error::InvalidName { .. }))),
                "{spec}"
            );
        }
    }

    #[test]
    fn unix_paths_and_abstract_names() {
        assert_eq!(
            parse("unix:/run/lock/x.sock").unwrap().unwrap(),
            SocketAddress::Unix("/run/lock/x.sock".into())
        );
        assert_eq!(
            parse("unix:rel.sock").unwrap().unwrap(),
            SocketAddress::Unix("rel.sock".into())
        );
        assert_eq!(
            parse("abstract:deploy").unwrap().unwrap(),
            SocketAddress::Abstract(b"deploy".to_vec())
        );
        let long = format!("unix:/{}", "x".repeat(MAX_SOCKET_PATH));
        for spec in ["unix:", "abstract:", long.as_str(), "abstract:a\0b"] {
            assert!(
                matches!(parse(spec), Some(Err(Error::InvalidName { .. }))),
                "{spec}"
            );
        }
    }

    #[test]
    fn displays_as_a_spec() {
        for spec in ["tcp:127.0.0.1:4711", "unix:/x.sock", "abstract:a b"] {
            assert_eq!(parse(spec).unwrap().unwrap().to_string(), spec);
        }
    }
}
