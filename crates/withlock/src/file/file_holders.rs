//! Who holds and waits for a lock file, from its entries in `/proc/locks`:
//! flock holders, withlock waiters found by their stamps (their queue's
//! OFD locks show no pid) in arrival order, then processes blocked in
//! flock(2) such as flock(1). "Since" and the `--max` mark come from the
//! holders' record-lock stamps (`since_stamp.rs`, `place_stamp.rs`), and
//! so do a holder's `--time-limit` deadline (`deadline_stamp.rs`) and its
//! `--max` slot (`slot.rs`).

use nix::sys::stat::FileStat;

use crate::file::deadline_stamp;
use crate::file::place_stamp;
use crate::file::since_stamp;
use crate::file::slot;
use crate::holder::{Holder, Holders};
use crate::proc_locks::{self, Entry, FileId, Kind};
use crate::request::Mode;

impl Holders {
    /// Looks up who holds, and who waits for, the file with status `file`,
    /// known to be held. When /proc/locks cannot be read (out of file
    /// descriptors, say), that is the reason the holder is not named, not
    /// another PID namespace.
    pub fn of_file(file: &FileStat) -> Holders {
        let entries = match proc_locks::read() {
            Ok(entries) => entries,
            Err(err) => return Holders::unidentified(unreadable(&err)),
        };
        let file = FileId::of(file);
        Holders::seen_in(&proc_locks::on_file(&entries, file), file)
    }

    /// The holders and waiters among `entries`, the `/proc/locks` entries
    /// of `file`, minus the holders that released it since.
    pub(crate) fn seen_in(entries: &[Entry], file: FileId) -> Holders {
        let mut holders = Holders::of_entries(entries);
        holders.drop_released(file);
        holders
    }

    /// A holder whose pid has exited either left the lock to a process it
    /// started, or released it between the read of /proc/locks and the
    /// look at its pid (its withlock ended). Only a second read tells the
    /// two apart, so that a lock being handed on is never said to be held
    /// by "a process it started".
    fn drop_released(&mut self, file: FileId) {
        if self.holders.iter().all(|holder| holder.running) {
            return;
        }
        let Ok(now) = proc_locks::read() else {
            return;
        };
        let still_held = |pid: i32| {
            proc_locks::on_file(&now, file)
                .iter()
                .any(|e| e.kind == Kind::Flock && !e.blocked && e.pid == pid)
        };
        self.holders
            .retain(|holder| holder.running || still_held(holder.pid));
    }

    /// The holders and waiters among `entries`, the `/proc/locks` entries
    /// of one file, as that one read lists them.
    fn of_entries(entries: &[Entry]) -> Holders {
        // /proc/locks comes a page per read(2), and the list may change
        // between pages, so an entry can be seen twice: count each pid once.
        let flocks = |blocked: bool| {
            let mut seen = Vec::new();
            entries
                .iter()
                .filter(move |e| e.kind == Kind::Flock && e.blocked == blocked)
                .filter(move |e| {
                    let first = !seen.contains(&e.pid);
                    seen.push(e.pid);
                    first
                })
        };
        let stamps: Vec<Entry> = entries
            .iter()
            .filter(|e| e.kind == Kind::Posix && !e.blocked)
            .filter(|e| since_stamp::decode(e.start).is_some())
            .cloned()
            .collect();
        let marked = |pid: i32| {
            entries.iter().any(|e| {
                e.kind == Kind::Posix
                    && !e.blocked
                    && e.pid == pid
                    && e.start == place_stamp::OFFSET
            })
        };
        let deadline = |pid: i32| {
            entries
                .iter()
                .filter(|e| e.kind == Kind::Posix && !e.blocked && e.pid == pid)
                .find_map(|e| deadline_stamp::decode(e.start))
        };
        let slot = |pid: i32| {
            entries
                .iter()
                .filter(|e| e.kind == Kind::Posix && !e.blocked && e.pid == pid)
                .find_map(|e| slot::of_mark(e.start))
        };
        let holders: Vec<Holder> = flocks(false)
            .map(|e| Holder {
                max: !e.write && marked(e.pid),
                slot: slot(e.pid),
                deadline: deadline(e.pid),
                ..from_entry(e, &stamps)
            })
            .collect();
        // withlock waiters queue on record locks that /proc/locks shows
        // without a pid, but each stamps itself while it waits, in arrival
        // order: a stamp of a process that holds no flock is a waiter.
        let mut queued: Vec<&Entry> = stamps
            .iter()
            .filter(|s| !holders.iter().any(|h| h.pid == s.pid))
            .collect();
        queued.sort_by_key(|s| s.start);
        queued.dedup_by_key(|s| s.pid);
        let mut waiters: Vec<Holder> = queued
            .into_iter()
            .map(|s| {
                let mut waiter = from_entry(s, &stamps);
                waiter.since = since_stamp::decode(s.start);
                waiter
            })
            .collect();
        // Then the waiters blocked in flock(2): flock(1) and the like,
        // unordered, and withlock clients already through the queue.
        for blocked in flocks(true) {
            if let Some(known) = waiters.iter_mut().find(|w| w.pid == blocked.pid) {
                known.mode = if blocked.write {
                    Mode::Exclusive
                } else {
                    Mode::Shared
                };
            } else {
                waiters.push(from_entry(blocked, &stamps));
            }
        }
        for waiter in &mut waiters {
            waiter.max = waiter.mode == Mode::Shared && marked(waiter.pid);
        }
        Holders {
            unidentified: None,
            holders,
            waiters,
        }
    }
}

/// The process of `entry`, in its mode, since its stamp among `stamps`.
fn from_entry(entry: &Entry, stamps: &[Entry]) -> Holder {
    let mode = if entry.write {
        Mode::Exclusive
    } else {
        Mode::Shared
    };
    let mut holder = Holder::of_pid(entry.pid, mode);
    holder.since = stamps
        .iter()
        .filter(|s| s.pid == entry.pid)
        .find_map(|s| since_stamp::decode(s.start));
    holder
}

/// Why no holder can be named when /proc/locks cannot be read.
fn unreadable(err: &std::io::Error) -> String {
    format!("/proc/locks cannot be read: {err}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A holder found exited is kept only while the lock it took is still
    /// held, by a process it started.
    #[test]
    fn an_exited_holder_is_named_only_while_its_lock_is_still_held() {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.lock");
        std::fs::write(&path, "").unwrap();
        let file = FileId::of(&nix::sys::stat::stat(&path).unwrap());
        // flock(1) holding the lock while its command, cat, reads stdin.
        let flock_cat = || {
            Command::new("flock")
                .arg(&path)
                .arg("cat")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let holds = |pid: u32| {
            let entries = proc_locks::read().unwrap();
            let held = proc_locks::on_file(&entries, file)
                .iter()
                .any(|e| e.kind == Kind::Flock && !e.blocked && e.pid == pid as i32);
            held.then_some(entries)
        };
        let wait_until_held = |pid: u32| {
            let start = std::time::Instant::now();
            loop {
                if let Some(entries) = holds(pid) {
                    return entries;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "flock(1) never locked"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        // flock(1) holds the lock, then releases it as it exits: a read of
        // /proc/locks taken before must not name it as a holder now.
        let mut flock = flock_cat();
        let before = wait_until_held(flock.id());
        drop(flock.stdin.take());
        flock.wait().unwrap();
        assert_eq!(
            Holders::seen_in(&proc_locks::on_file(&before, file), file).holders,
            []
        );
        // flock(1) killed, its command still holds the lock.
        let mut flock = flock_cat();
        let before = wait_until_held(flock.id());
        // Killed once its command runs, with the lock's descriptor; the
        // command ends when its stdin does (wait() would close it).
        let children = format!("/proc/{0}/task/{0}/children", flock.id());
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&children).unwrap().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "flock(1) never forked"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let stdin = flock.stdin.take();
        flock.kill().unwrap();
        flock.wait().unwrap();
        let holders = Holders::seen_in(&proc_locks::on_file(&before, file), file).holders;
        drop(stdin);
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert!(!holders[0].running);
        assert!(
            holders[0]
                .to_string()
                .contains("a process it started still holds")
        );
    }
}
