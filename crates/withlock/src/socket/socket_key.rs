//! A socket lock's place in a [`crate::LockSet`]'s global order: TCP by
//! address and port, then Unix sockets by their directory's identity and
//! file name ([`PathKey`]), then abstract names by their bytes, so that
//! `tcp:4711` and `tcp:127.0.0.1:4711` are one lock.

use std::net::IpAddr;

use crate::path_key::PathKey;
use crate::socket::socket_spec::SocketAddress;

/// The order key of a socket lock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum SocketKey {
    /// The address's bytes (IPv4 mapped into IPv6) and port.
    Tcp([u8; 16], u16),
    /// The socket file's directory, then its name.
    Unix(PathKey),
    /// The abstract name.
    Abstract(Vec<u8>),
}

impl SocketKey {
    /// The key of the lock on `address`.
    pub(crate) fn of(address: &SocketAddress) -> SocketKey {
        match address {
            SocketAddress::Tcp(addr) => {
                let ip = match addr.ip() {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                SocketKey::Tcp(ip.octets(), addr.port())
            }
            SocketAddress::Unix(path) => SocketKey::Unix(PathKey::of(path)),
            SocketAddress::Abstract(name) => SocketKey::Abstract(name.clone()),
        }
    }

    /// `tcp/[IP]:PORT`, `unix/DEV:INO/NAME` or `abstract/NAME`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        match self {
            SocketKey::Tcp(ip, port) => {
                let ip = std::net::Ipv6Addr::from(*ip);
                format!("tcp/[{ip}]:{port}").into_bytes()
            }
            SocketKey::Unix(path) => [b"unix/".as_slice(), &path.to_bytes()].concat(),
            SocketKey::Abstract(name) => [b"abstract/".as_slice(), name].concat(),
        }
    }
}
