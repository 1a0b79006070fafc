//! A TCP proxy in the test process, between a lock holder and an etcd
//! member, to cut the holder off while the cluster stays healthy:
//! [`Proxy::freeze`] stops forwarding bytes but keeps every socket open (a
//! partition: only the client's own timeouts and keepalives notice), and
//! [`Proxy::sever`] closes every connection and stops listening, so that
//! reconnecting is refused.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A running proxy; its threads end with the process (or, once severed,
/// with their connections).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accepting thread, which owns the listener: joined on `sever`,
    /// so that reconnects are refused once it returns.
    accepting: Mutex<Option<JoinHandle<()>>>,
}

/// What the accepting thread and the copying threads share.
#[derive(Default)]
struct Shared {
    frozen: AtomicBool,
    severed: AtomicBool,
    /// Both ends of every connection, to close them on `sever`.
    streams: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to
    /// `target` (such as a member's [`endpoint`](crate::Member::endpoint)).
    pub fn start(target: impl ToSocketAddrs) -> Proxy {
        let target = target
            .to_socket_addrs()
            .expect("resolve the proxy's target")
            .next()
            .expect("the proxy's target has an address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared::default());
        let for_thread = shared.clone();
        let accepting = std::thread::spawn(move || accept(listener, target, &for_thread));
        Proxy {
            addr,
            shared,
            accepting: Mutex::new(Some(accepting)),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, for a URL's host list.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// A plain withlock URL through this proxy: `etcd://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.addr)
    }

    /// Stops forwarding, leaving every connection open, and forwards
    /// nothing for connections made from now on either: a partition.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::SeqCst);
    }

    /// Closes every connection through the proxy and stops listening:
    /// a client sees its connection end and its reconnects refused.
    pub fn sever(&self) {
        self.shared.severed.store(true, Ordering::SeqCst);
        for stream in self.shared.streams.lock().unwrap().drain(..) {
            stream.shutdown(Shutdown::Both).ok();
        }
        // Wakes the accepting thread, which sees `severed` and drops the
        // listener. Refused if it already has.
        let _ = TcpStream::connect(self.addr);
        if let Some(accepting) = self.accepting.lock().unwrap().take() {
            accepting.join().expect("the proxy's accepting thread");
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.sever();
    }
}

fn accept(listener: TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.severed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let mut streams = shared.streams.lock().unwrap();
        if shared.frozen.load(Ordering::SeqCst) {
            // Held open and never answered, as behind a partition.
            streams.push(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(target) else {
            // The member is down: so is this connection.
            continue;
        };
        streams.push(client.try_clone().expect("clone a socket"));
        streams.push(server.try_clone().expect("clone a socket"));
        drop(streams);
        pipe(
            client.try_clone().expect("clone a socket"),
            server.try_clone().expect("clone a socket"),
            shared.clone(),
        );
        pipe(server, client, shared.clone());
    }
}

/// Copies `from` to `to` until either closes; while frozen, data read is
/// dropped rather than forwarded, and so is the close.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if shared.frozen.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // A partition carries no close either: the far end must not learn
        // that this one went away.
        if !shared.frozen.load(Ordering::SeqCst) {
            to.shutdown(Shutdown::Write).ok();
        }
    });
}
