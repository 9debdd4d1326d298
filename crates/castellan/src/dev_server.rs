//! The server `castellan dev up` starts in the background: a port taken by another process is said
//! before anything starts, and the start is waited for (bounded) until this very server answers
//! `/readyz`; a server that exits or never answers is reported with the end of its log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long `dev up` waits for its server to answer `/readyz`.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long one `/readyz` request may take (a listener that accepts and never answers must not
/// stall the wait).
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// What `castellan serve` logs once it holds its port (serve.rs).
const SERVING: &str = "castellan is serving";

/// Refuses a listen address another process holds (a server from an earlier `castellan serve`, say),
/// before the server is started: its own start would fail, and the other one would answer `/readyz`.
pub fn check_port_free(listen: SocketAddr) -> Result<()> {
    match std::net::TcpListener::bind(listen) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "{listen} is already in use by another process (a `castellan serve` started earlier?): \
             stop it, or give `dev up` another address with --listen ADDR (or `listen` in the dev \
             configuration)"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {listen}")),
    }
}

/// A started server: its process and log.
pub struct Started {
    pub child: Child,
    pub log_path: PathBuf,
    /// Where the log stood before this start, so that a failure shows only what this server wrote.
    log_start: u64,
}

/// Starts `castellan serve --data-dir DIR --listen ADDR` in its own process group, its output
/// appended to `<data_dir>/castellan.log`.
pub fn spawn(data_dir: &Path, listen: SocketAddr) -> Result<Started> {
    use std::os::unix::process::CommandExt;
    let log_path = data_dir.join("castellan.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe()?;
    let child = std::process::Command::new(exe)
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(["--listen", &listen.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the server")?;
    Ok(Started {
        child,
        log_path,
        log_start,
    })
}

impl Started {
    /// Waits until the server answers `/readyz` at `url`, at most [`READY_LIMIT`]. A server that
    /// exits is reported with its exit status and the end of its log; one that does not become ready
    /// in time is stopped and reported the same way.
    pub async fn wait_ready(&mut self, url: &str) -> Result<()> {
        self.wait_ready_within(url, READY_LIMIT).await
    }

    async fn wait_ready_within(&mut self, url: &str, limit: Duration) -> Result<()> {
        let http = reqwest::Client::builder().timeout(PROBE_LIMIT).build()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server failed to start ({status}){}", self.log_tail());
            }
            let ready = http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            // Ready, and this very process is the one serving (it says so in its log once it holds
            // the port), not another one that answered in its place.
            if ready && self.child.try_wait()?.is_none() && self.log_since_start().contains(SERVING)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "the server did not answer {url}/readyz within {}s and was stopped{}",
                    limit.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What this server has written to its log so far (at most 64 KiB).
    fn log_since_start(&self) -> String {
        use std::io::{Read as _, Seek as _};
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.seek(std::io::SeekFrom::Start(self.log_start));
            let _ = f.take(64 * 1024).read_to_string(&mut text);
        }
        text
    }

    /// The last lines this server wrote to its log, as the end of an error message.
    fn log_tail(&self) -> String {
        let text = self.log_since_start();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
        if tail.is_empty() {
            format!("; see {}", self.log_path.display())
        } else {
            format!(":\n  {tail}\n(log: {})", self.log_path.display())
        }
    }
}
