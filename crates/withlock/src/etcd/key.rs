//! An etcd lock's place in a [`crate::LockSet`]'s global order.

/// The cluster (its endpoints as the URL gives them), then the lock's key
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OrderKey {
    cluster: String,
    prefix: String,
}

impl OrderKey {
    pub(crate) fn new(cluster: &str, prefix: &str) -> OrderKey {
        OrderKey {
            cluster: cluster.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// `etcd/CLUSTER/PREFIX`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        format!("etcd/{}/{}", self.cluster, self.prefix).into_bytes()
    }
}
