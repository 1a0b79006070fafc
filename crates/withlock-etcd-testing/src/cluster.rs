//! A throwaway etcd cluster of several members on 127.0.0.1, for the
//! fault tests: kill a member (the leader, or enough to lose the quorum)
//! while a lock is held. Plain TCP, no auth; every member is killed when
//! the cluster is dropped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::free_port;
use crate::member::{Member, Plan, START_TIMEOUT};
use crate::server::token;

/// A running cluster.
pub struct Cluster {
    members: Vec<Member>,
    // Last: removed after the members are killed.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `size` members and waits until each answers (which takes a
    /// quorum, so an elected leader).
    pub fn start(size: usize) -> Cluster {
        assert!(size > 0, "a cluster has members");
        let dir = tempfile::Builder::new()
            .prefix("withlock-etcd-cluster-")
            .tempdir()
            .expect("temporary directory");
        let mut last_log = String::new();
        // A free port may be taken by someone else before etcd binds it:
        // then a member exits, and the whole cluster starts anew.
        for attempt in 0..5 {
            let attempt_dir = dir.path().join(format!("attempt{attempt}"));
            match start_members(&attempt_dir, size, &token(dir.path())) {
                Ok(members) => return Cluster { members, dir },
                Err(log) => last_log = log,
            }
        }
        panic!("the test etcd cluster did not start: {last_log}");
    }

    /// The URL withlock connects with, listing every member:
    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// Every member's `127.0.0.1:PORT`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// How many members it has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has no members (never: [`Cluster::start`] refuses).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// This cluster's temporary directory (the members' data and logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Member `i`.
    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// `etcdctl` (API 3) with every member's endpoint.
    pub fn etcdctl(&self) -> Command {
        Access::plain().etcdctl(&self.endpoints())
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts killed member `i` again with its data and waits until it
    /// answers (which needs a quorum with it).
    pub fn restart(&mut self, i: usize) {
        self.members[i].restart();
        let deadline = Instant::now() + START_TIMEOUT;
        if let Err(log) = self.members[i].wait_healthy(deadline) {
            panic!("the restarted member did not come back: {log}");
        }
    }

    /// The index of the leader, once the running members agree on one
    /// that runs. Fails the test if they do not within the start bound
    /// (for instance with no quorum).
    pub fn leader(&mut self) -> usize {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(leader) = self.agreed_leader() {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "the running members agreed on no leader within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running member that every running member names as leader.
    fn agreed_leader(&mut self) -> Option<usize> {
        let mut leader = None;
        let mut ids = Vec::new();
        for (i, member) in self.members.iter_mut().enumerate() {
            if !member.is_running() {
                continue;
            }
            let status = status(member)?;
            if leader.is_some_and(|id| id != status.leader) || status.leader == 0 {
                return None;
            }
            leader = Some(status.leader);
            ids.push((i, status.member_id));
        }
        let leader = leader?;
        ids.into_iter()
            .find(|&(_, id)| id == leader)
            .map(|(i, _)| i)
    }
}

/// What a member says of itself.
struct Status {
    member_id: u64,
    leader: u64,
}

/// `etcdctl endpoint status` of one member; `None` if it does not answer.
fn status(member: &Member) -> Option<Status> {
    let output = member
        .etcdctl()
        .args(["endpoint", "status", "-w", "json", "--command-timeout=2s"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let status = &json.get(0)?["Status"];
    Some(Status {
        member_id: status["header"]["member_id"].as_u64()?,
        leader: status["leader"].as_u64()?,
    })
}

/// Starts `size` members in `dir` and waits for all; `Err` with the log
/// of one that exited.
fn start_members(dir: &std::path::Path, size: usize, token: &str) -> Result<Vec<Member>, String> {
    let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<Member> = ports
        .iter()
        .enumerate()
        .map(|(i, &(client_port, peer_port))| {
            let name = format!("m{i}");
            let plan = Plan {
                name: &name,
                client_port,
                peer_port,
                initial_cluster: &initial_cluster,
                token,
            };
            Member::spawn(dir, &plan, Access::plain())
        })
        .collect();
    let deadline = Instant::now() + START_TIMEOUT;
    for member in &mut members {
        member.wait_healthy(deadline)?;
    }
    Ok(members)
}
