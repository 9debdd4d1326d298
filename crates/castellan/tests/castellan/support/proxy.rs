//! A tiny round-robin TCP proxy: each accepted connection goes to the next backend in turn, the way a
//! load balancer (or a Kubernetes Service) spreads connections over replicas. It counts the
//! connections each backend got, and stops (and its threads end) when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

pub struct RoundRobin {
    pub url: String,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Connections forwarded to each backend, in the order of `backends`.
    pub per_backend: Arc<Vec<AtomicUsize>>,
    accept: Option<JoinHandle<()>>,
}

/// Copies `from` into `to` until end of stream, then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl RoundRobin {
    /// Connections each backend got so far.
    pub fn counts(&self) -> Vec<usize> {
        self.per_backend
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    /// Listens on 127.0.0.1 and forwards to `backends` (`host:port`) in turn.
    pub fn start(backends: Vec<String>) -> RoundRobin {
        RoundRobin::start_on(
            TcpListener::bind("127.0.0.1:0").expect("bind proxy"),
            backends,
        )
    }

    /// Forwards what `listener` accepts (bound before the backends start, when they must know the
    /// proxy's address) to `backends` in turn.
    pub fn start_on(listener: TcpListener, backends: Vec<String>) -> RoundRobin {
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let per_backend = Arc::new(
            (0..backends.len())
                .map(|_| AtomicUsize::new(0))
                .collect::<Vec<_>>(),
        );
        let (stop2, accepted2, per2) = (stop.clone(), accepted.clone(), per_backend.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let i = accepted2.fetch_add(1, Ordering::SeqCst) % backends.len();
                per2[i].fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&backends[i]) else {
                    continue;
                };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        RoundRobin {
            url: format!("http://{addr}"),
            addr,
            stop,
            accepted,
            per_backend,
            accept: Some(accept),
        }
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// `http://127.0.0.1:PORT` → `127.0.0.1:PORT`.
pub fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}
