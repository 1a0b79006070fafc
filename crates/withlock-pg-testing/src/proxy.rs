//! A TCP proxy in front of the test server, to cut the network between a
//! lock holder and the server: `freeze` stops forwarding but keeps every
//! socket open (a partition: only timeouts and keepalives notice), `sever`
//! closes every connection (both ends see it at once).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A running proxy; its threads end with the process.
pub struct Proxy {
    port: u16,
    frozen: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards a new port on 127.0.0.1 to `target_port` on 127.0.0.1.
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let (frozen2, streams2) = (frozen.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server =
                    TcpStream::connect(("127.0.0.1", target_port)).expect("reach the server");
                let mut all = streams2.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                drop(all);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    frozen2.clone(),
                );
                pipe(server, client, frozen2.clone());
            }
        });
        Proxy {
            port,
            frozen,
            streams,
        }
    }

    /// A URL for the server through this proxy.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops forwarding, leaving the connections open: a partition.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Closes every connection through the proxy.
    pub fn sever(&self) {
        for stream in self.streams.lock().unwrap().iter() {
            stream.shutdown(Shutdown::Both).ok();
        }
    }
}

/// Copies `from` to `to` until either closes; while frozen, data read is
/// dropped rather than forwarded, and so is the close.
fn pipe(mut from: TcpStream, mut to: TcpStream, frozen: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if frozen.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // A partition carries no close either: the far end must not learn
        // that this one went away.
        if !frozen.load(Ordering::SeqCst) {
            to.shutdown(Shutdown::Write).ok();
        }
    });
}
