//! Slowing down guessed passwords: fixed windows of failed sign-ins, counted per account and per
//! source address (in the store, so every replica counts together).
//!
//! The store counts the failures (atomically, so replicas count together); a key over its limit is refused until its
//! window ends; failures while refused do not extend the window, so nobody can hold an account shut for longer than the attack itself lasts, and the real
//! user signs in again once the window is over. The per-account limit is higher than the per-address
//! one: one address guessing is stopped early, and many addresses guessing one account are slowed
//! to a few guesses per window.

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Window length, seconds.
    pub window_secs: i64,
    /// Failures per account in one window before it is refused.
    pub per_account: i64,
    /// Failures per source address in one window before it is refused.
    pub per_address: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window_secs: 60,
            per_account: 10,
            per_address: 20,
        }
    }
}

/// A counter as stored: the start of its window and the failures in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Window start.
    pub window_start: i64,
    /// Failures counted in the window.
    pub failures: i64,
}

/// When a refused key may try again, or `None` when it may try now.
pub fn refused_until(
    counter: Option<Counter>,
    limit: i64,
    window_secs: i64,
    now: i64,
) -> Option<i64> {
    let c = counter?;
    let ends = c.window_start + window_secs;
    (now < ends && c.failures >= limit).then_some(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_refuses_then_ends() {
        let c = |failures| {
            Some(Counter {
                window_start: 100,
                failures,
            })
        };
        assert_eq!(refused_until(None, 5, 60, 100), None);
        assert_eq!(refused_until(c(4), 5, 60, 110), None);
        assert_eq!(refused_until(c(5), 5, 60, 110), Some(160));
        assert_eq!(refused_until(c(50), 5, 60, 159), Some(160));
        // The window is over: whatever it counted, the key may try again.
        assert_eq!(refused_until(c(50), 5, 60, 160), None);
    }
}
