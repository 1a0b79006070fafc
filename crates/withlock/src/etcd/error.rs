//! Errors of the etcd backend that the generic [`crate::Error`] has no
//! variant for; they reach callers of the [`crate::Lock`] trait as
//! [`crate::Error::Backend`], sorted by [`EtcdError::kind`], and come back
//! out with `error.downcast_ref::<EtcdError>()`. No message repeats a
//! password or the URL that may hold one.

use std::path::PathBuf;

use crate::backend_error::BackendError;
use crate::error_kind::ErrorKind;

/// What can go wrong with an etcd lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The etcd URL could not be read.
    #[error("invalid etcd URL: {reason}")]
    BadUrl {
        /// What is wrong, and the fix.
        reason: String,
    },

    /// The password file named in the URL could not be read.
    #[error("reading the etcd password file {}: {cause}", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        cause: std::io::Error,
    },

    /// A CA, certificate or key file could not be used.
    #[error("TLS for {cluster}: {reason}")]
    TlsFiles {
        /// The cluster, as messages name it.
        cluster: String,
        /// What is wrong with which file, and the fix.
        reason: String,
    },

    /// No endpoint could be reached.
    #[error(
        "cannot reach etcd at {cluster}: {cause}: check that etcd runs there and the URL's \
         HOST:PORT is its client address (etcd --advertise-client-urls)"
    )]
    Unreachable {
        /// The cluster, as messages name it.
        cluster: String,
        /// The last endpoint's failure.
        cause: String,
    },

    /// The TLS handshake failed: a server that does not speak TLS, or a
    /// certificate that does not verify.
    #[error(
        "TLS with etcd at {cluster} failed: {cause}: use etcds:// only for a cluster that \
         serves TLS, and give its CA with ?cacert=PATH (or ETCDCTL_CACERT)"
    )]
    Tls {
        /// The cluster, as messages name it.
        cluster: String,
        /// The handshake's failure.
        cause: String,
    },

    /// Reachable, but no member can serve: the cluster has no leader.
    #[error(
        "etcd at {cluster} has no quorum ({cause}): a majority of its members must run and \
         reach each other; check them with etcdctl endpoint status --cluster"
    )]
    NoQuorum {
        /// The cluster, as messages name it.
        cluster: String,
        /// What the members said.
        cause: String,
    },

    /// The user name or password was refused.
    #[error(
        "etcd at {cluster} refused the user {user:?}: check the user name and the password \
         (ETCDCTL_PASSWORD or ?password-file=PATH)"
    )]
    BadCredentials {
        /// The cluster, as messages name it.
        cluster: String,
        /// The user name.
        user: String,
    },

    /// The cluster has authentication on and the URL names no user.
    #[error(
        "etcd at {cluster} requires a user: name one in the URL (etcd://USER@HOST:PORT) or \
         ETCDCTL_USER, with its password in ETCDCTL_PASSWORD or ?password-file=PATH"
    )]
    NeedsUser {
        /// The cluster, as messages name it.
        cluster: String,
    },

    /// The user may not read or write the lock's keys.
    #[error(
        "etcd at {cluster} denied {what}: grant the user readwrite on the lock prefix \
         (etcdctl role grant-permission --prefix=true ROLE readwrite {prefix})"
    )]
    PermissionDenied {
        /// The cluster, as messages name it.
        cluster: String,
        /// What was being done.
        what: &'static str,
        /// The key prefix to grant.
        prefix: String,
    },

    /// The cluster answered something withlock does not understand.
    #[error("etcd at {cluster} failed {what}: {cause}")]
    Failed {
        /// The cluster, as messages name it.
        cluster: String,
        /// What was being done.
        what: &'static str,
        /// The server's words, or what was wrong with its answer.
        cause: String,
    },

    /// A waiter's lease ended before it was granted the lock (the
    /// cluster expired or someone revoked it).
    #[error("lost the place in line for {lock} on {cluster}: its lease ended ({cause}); try again")]
    LostWhileWaiting {
        /// The lock name.
        lock: String,
        /// The cluster, as messages name it.
        cluster: String,
        /// How it ended.
        cause: String,
    },

    /// Releasing found the lock already gone.
    #[error("the lock was no longer held on {cluster}: its lease had ended")]
    NotHeld {
        /// The cluster, as messages name it.
        cluster: String,
    },
}

impl EtcdError {
    /// What sort of failure it is: what exit status, quiet rule and
    /// exception class it gets.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EtcdError::BadUrl { .. } => ErrorKind::Usage,
            EtcdError::TlsFiles { .. } | EtcdError::Tls { .. } => ErrorKind::Config,
            EtcdError::PasswordFile { .. }
            | EtcdError::BadCredentials { .. }
            | EtcdError::NeedsUser { .. }
            | EtcdError::PermissionDenied { .. } => ErrorKind::Permission,
            EtcdError::Unreachable { .. }
            | EtcdError::NoQuorum { .. }
            | EtcdError::Failed { .. }
            | EtcdError::LostWhileWaiting { .. }
            | EtcdError::NotHeld { .. } => ErrorKind::Unavailable,
        }
    }
}

impl From<EtcdError> for crate::Error {
    fn from(error: EtcdError) -> Self {
        crate::Error::Backend(BackendError::new(error.kind(), error))
    }
}
