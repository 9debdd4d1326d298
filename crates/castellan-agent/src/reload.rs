//! Reload commands: `sh -c`, time-limited, killed with everything they started.

use std::time::Duration;

/// Runs a reload command with `sh -c`, for at most `timeout`: one that hangs is killed, with whatever
/// it started (it runs in a process group of its own), so it cannot stall renewals.
pub(crate) async fn run_reload(cmd: &str, timeout: Duration) -> Result<(), String> {
    let r = run_with_timeout(cmd, timeout).await;
    match &r {
        Ok(()) => tracing::info!(command = cmd, "reload command ran"),
        Err(e) => {
            tracing::warn!(command = cmd, error = %e, "reload command failed; it runs again on the next pass")
        }
    }
    r
}

async fn run_with_timeout(cmd: &str, timeout: Duration) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("it exited with {s}")),
        Ok(Err(e)) => Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            // Not yet waited for, so its pid (and so its group id) is still its own.
            if let Some(group) = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            Err(format!(
                "it did not finish within {}s and was killed",
                timeout.as_secs()
            ))
        }
    }
}
