//! From a [`SocketAddress`] to the kernel's address, and the socket that
//! binds or connects to it: a stream socket, close-on-exec and
//! non-blocking (Linux).

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, SockaddrLike, UnixAddr,
};

use crate::socket::socket_spec::SocketAddress;

/// A socket lock's address as the kernel takes it.
pub(crate) enum Sockaddr {
    V4(SockaddrIn),
    V6(SockaddrIn6),
    Unix(UnixAddr),
}

impl Sockaddr {
    /// The kernel's form of `address`; an error for a Unix path or
    /// abstract name too long for a socket address.
    pub(crate) fn of(address: &SocketAddress) -> Result<Sockaddr, Errno> {
        Ok(match address {
            SocketAddress::Tcp(std::net::SocketAddr::V4(a)) => Sockaddr::V4(SockaddrIn::from(*a)),
            SocketAddress::Tcp(std::net::SocketAddr::V6(a)) => Sockaddr::V6(SockaddrIn6::from(*a)),
            SocketAddress::Unix(path) => Sockaddr::Unix(UnixAddr::new(path)?),
            SocketAddress::Abstract(name) => Sockaddr::Unix(UnixAddr::new_abstract(name)?),
        })
    }

    pub(crate) fn as_dyn(&self) -> &dyn SockaddrLike {
        match self {
            Sockaddr::V4(a) => a,
            Sockaddr::V6(a) => a,
            Sockaddr::Unix(a) => a,
        }
    }

    pub(crate) fn is_tcp(&self) -> bool {
        !matches!(self, Sockaddr::Unix(_))
    }

    /// A new socket of this address's family.
    pub(crate) fn socket(&self) -> nix::Result<OwnedFd> {
        let family = match self {
            Sockaddr::V4(_) => AddressFamily::Inet,
            Sockaddr::V6(_) => AddressFamily::Inet6,
            Sockaddr::Unix(_) => AddressFamily::Unix,
        };
        // Recorded for crate::fork_child, as a lock file is: a listening
        // socket is a held lock.
        crate::fork_child::opening(|| {
            socket::socket(
                family,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
        })
    }
}
