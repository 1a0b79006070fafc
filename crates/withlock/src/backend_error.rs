//! A failure of one kind of lock's own, carried through the kind-neutral
//! [`crate::Error`]: the kind of lock sorts it ([`ErrorKind`]) and keeps
//! its typed error, which a caller reaches by downcasting
//! ([`crate::Error::downcast_ref`]), as `withlock::pg::PgError` for a
//! PostgreSQL lock.

use std::error::Error as StdError;
use std::fmt;

use crate::error_kind::ErrorKind;

/// A kind of lock's own error, with the [`ErrorKind`] it sorted it into.
///
/// It prints as the error it carries, and its `source()` is that error's,
/// so an error chain says each cause once.
#[derive(Debug)]
pub struct BackendError {
    kind: ErrorKind,
    error: Box<dyn StdError + Send + Sync + 'static>,
}

impl BackendError {
    /// Carries `error`, sorted as `kind`.
    pub fn new(kind: ErrorKind, error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        BackendError {
            kind,
            error: error.into(),
        }
    }

    /// What sort of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The kind of lock's own error.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// The kind of lock's own error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.error.downcast_ref()
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no answer from {0}")]
    struct Unreachable(&'static str);

    #[test]
    fn carries_its_kind_and_typed_error() {
        let error = BackendError::new(ErrorKind::Unavailable, Unreachable("db"));
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(error.to_string(), "no answer from db");
        assert_eq!(error.downcast_ref::<Unreachable>().unwrap().0, "db");
        assert!(error.downcast_ref::<std::io::Error>().is_none());
    }
}
