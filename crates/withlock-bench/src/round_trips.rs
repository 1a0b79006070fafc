//! Counting the round trips `withlock --url` makes to the server before
//! its command starts.
//!
//! withlock is pointed at a TCP proxy of the benchmark's own, which
//! forwards to the server and notes, for every chunk of bytes it passes
//! on, which way it went and when (CLOCK_MONOTONIC). The locked command is
//! `withlock-bench stamp`, which writes the monotonic time its `main`
//! began. A round trip is the client sending and then the server
//! answering: every change of direction from client-to-server to
//! server-to-client counts one, however many packets each side's turn
//! took. Those whose request was sent before the command started are the
//! round trips before it. The TCP handshake, which the proxy does not
//! see, counts one more.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{Context, Result, ensure};

use crate::helpers;
use crate::rig::Rig;

/// Which way a chunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    ToServer,
    ToClient,
}

/// Round trips of one locked run of `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoundTrips {
    /// Before the command started, the TCP handshake included.
    pub before: usize,
    /// After it started: the release, and the heartbeat's, if any.
    pub after: usize,
}

/// The round trips of `runs` runs of `withlock --url` on the server at
/// 127.0.0.1:`port` (database `postgres`, user `postgres`), one at a time.
pub(crate) fn measure(rig: &Rig, port: u16, runs: usize) -> Result<Vec<RoundTrips>> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the proxy")?;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        listener.local_addr()?.port()
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            forward(&client, &server, Direction::ToServer, recorder.clone());
            forward(&server, &client, Direction::ToClient, recorder.clone());
        }
    });
    let mut counts = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = rig.trial_dir()?;
        let stamp = dir.path().join("start");
        events
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clear();
        one_run(rig, &url, &stamp)?;
        let started = helpers::read_number(&stamp)?;
        let seen = events.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        counts.push(count(&seen, started));
    }
    Ok(counts)
}

fn one_run(rig: &Rig, url: &str, stamp: &Path) -> Result<()> {
    let status = Command::new(&rig.programs().withlock)
        .env_remove("WITHLOCK_URL")
        .env_remove("WITHLOCK_DIR")
        .args(["--url", url, "round-trips", "--"])
        .arg(&rig.programs().bench)
        .arg("stamp")
        .arg(stamp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("cannot run withlock")?;
    ensure!(
        status.success(),
        "withlock --url through the proxy failed: {status}"
    );
    Ok(())
}

/// Round trips in `events` (time in ns, direction; in the order they
/// happened), split at `started`.
pub(crate) fn count(events: &[(u64, Direction)], started: u64) -> RoundTrips {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|(at, _)| *at);
    // The handshake, before anything the proxy sees.
    let mut trips = RoundTrips {
        before: 1,
        after: 0,
    };
    let mut asked: Option<u64> = None;
    for (at, direction) in sorted {
        match direction {
            Direction::ToServer => {
                asked.get_or_insert(at);
            }
            Direction::ToClient => {
                if let Some(asked) = asked.take() {
                    match asked < started {
                        true => trips.before += 1,
                        false => trips.after += 1,
                    }
                }
            }
        }
    }
    trips
}

/// Copies `from` to `to` in a thread of its own, noting each chunk.
fn forward(
    from: &TcpStream,
    to: &TcpStream,
    direction: Direction,
    events: Arc<Mutex<Vec<(u64, Direction)>>>,
) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let mut buffer = [0; 16384];
        loop {
            let read = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if let (Ok(now), Ok(mut events)) = (helpers::monotonic_ns(), events.lock()) {
                events.push((now, direction));
            }
            if to.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{ToClient, ToServer};

    #[test]
    fn a_turn_of_each_side_is_one_round_trip_however_many_chunks() {
        let events = [
            (10, ToServer),
            (11, ToClient),
            (20, ToServer),
            (21, ToServer),
            (25, ToClient),
            (26, ToClient),
            // The command started at 30; the release comes after.
            (40, ToServer),
            (41, ToClient),
        ];
        assert_eq!(
            count(&events, 30),
            RoundTrips {
                before: 3,
                after: 1
            }
        );
        // A message the server sends unasked is no round trip.
        assert_eq!(count(&[(5, ToClient)], 30).before, 1);
    }
}
