//! Durations as people write them in configuration files and flags: `90s`, `15m`, `24h`, `30d`.

use std::time::Duration;

/// The longest duration [`parse_duration`] accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `15m`, `24h`, `30d`, `90s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 90s, 15m, 24h or 30d ({e})"))?;
    // Nothing here lasts a century; the bound also keeps every duration's seconds within an i64.
    if d > MAX_DURATION {
        return Err(format!("`{s}` is longer than 100 years"));
    }
    Ok(d)
}
