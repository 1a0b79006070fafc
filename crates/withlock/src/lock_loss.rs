//! A held lock lost while this process lives, whatever kind of lock it
//! is. Only a lock kept elsewhere can be: a PostgreSQL lock whose session
//! ended or cannot be reached (`pg::heartbeat`). A file or socket lock
//! lasts as long as its descriptor, so it is never lost.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// A lost lock: the kind of lock's own account of the loss (for a
/// PostgreSQL lock a `pg::LockLost`, reached with
/// [`LockLoss::downcast_ref`]). It prints as that account.
#[derive(Debug, Clone)]
pub struct LockLoss(Arc<dyn StdError + Send + Sync + 'static>);

impl LockLoss {
    /// Carries a kind of lock's own account of a loss.
    pub fn new(lost: impl StdError + Send + Sync + 'static) -> Self {
        LockLoss(Arc::new(lost))
    }

    /// The kind of lock's own account, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }
}

impl fmt::Display for LockLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for LockLoss {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("lost the lock x: session ended")]
    struct SessionEnded;

    #[test]
    fn carries_the_kinds_own_account() {
        let loss = LockLoss::new(SessionEnded);
        assert_eq!(loss.to_string(), "lost the lock x: session ended");
        assert!(loss.clone().downcast_ref::<SessionEnded>().is_some());
        assert!(loss.downcast_ref::<std::io::Error>().is_none());
    }
}
