//! `[signin]`: how people sign in (lifetimes, password hashing, throttling).

use std::time::Duration;

use castellan_core::signin::password::HashParams;
use castellan_core::signin::throttle::Limits;
use serde::Deserialize;

use super::{ConfigError, duration};
use crate::signin::SigninSettings;

/// `[signin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigninConfig {
    /// How long an authorization code may wait for its exchange (at most 60 s).
    #[serde(deserialize_with = "duration")]
    pub code_ttl: Duration,
    /// How long a browser stays signed in.
    #[serde(deserialize_with = "duration")]
    pub session_ttl: Duration,
    /// Lifetime of an ID token.
    #[serde(deserialize_with = "duration")]
    pub id_token_ttl: Duration,
    /// A refresh token unused for this long expires.
    #[serde(deserialize_with = "duration")]
    pub refresh_idle_ttl: Duration,
    /// No refresh beyond this time after sign-in.
    #[serde(deserialize_with = "duration")]
    pub refresh_absolute_ttl: Duration,
    /// A rotated refresh token presented again within this window gets a token of its own instead
    /// of revoking its family (concurrent refreshes); 0 (the default) turns it off.
    #[serde(deserialize_with = "duration")]
    pub refresh_reuse_grace: Duration,
    /// argon2id memory, KiB.
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Password hashes computed at once (each holds `argon2_memory_kib`); 0: the number of CPUs.
    pub max_concurrent_hashes: usize,
    /// The window failed sign-ins are counted in.
    #[serde(deserialize_with = "duration")]
    pub throttle_window: Duration,
    /// Failed sign-ins per account per window before it waits for the window's end.
    pub throttle_per_account: i64,
    /// Failed sign-ins per source address per window before it waits for the window's end.
    pub throttle_per_address: i64,
}

impl Default for SigninConfig {
    fn default() -> Self {
        let s = SigninSettings::default();
        let secs = |n: i64| Duration::from_secs(n.unsigned_abs());
        Self {
            code_ttl: secs(s.code_ttl_secs),
            session_ttl: secs(s.session_ttl_secs),
            id_token_ttl: secs(s.id_token_ttl_secs),
            refresh_idle_ttl: secs(s.refresh_idle_secs),
            refresh_absolute_ttl: secs(s.refresh_absolute_secs),
            refresh_reuse_grace: secs(s.refresh_grace_secs),
            argon2_memory_kib: s.password.memory_kib,
            argon2_iterations: s.password.iterations,
            argon2_parallelism: s.password.parallelism,
            max_concurrent_hashes: 0,
            throttle_window: secs(s.throttle.window_secs),
            throttle_per_account: s.throttle.per_account,
            throttle_per_address: s.throttle.per_address,
        }
    }
}

impl SigninConfig {
    /// The settings, checked.
    pub fn settings(&self) -> Result<SigninSettings, ConfigError> {
        let bad = |field, message: &str| ConfigError::Invalid {
            field,
            message: message.to_owned(),
        };
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4);
        if self.code_ttl.is_zero() || self.code_ttl > Duration::from_secs(60) {
            return Err(bad("signin.code_ttl", "must be from 1s to 60s"));
        }
        for (field, d) in [
            ("signin.session_ttl", self.session_ttl),
            ("signin.id_token_ttl", self.id_token_ttl),
            ("signin.refresh_idle_ttl", self.refresh_idle_ttl),
            ("signin.refresh_absolute_ttl", self.refresh_absolute_ttl),
            ("signin.throttle_window", self.throttle_window),
        ] {
            if d < Duration::from_secs(1) {
                return Err(bad(field, "must be at least 1s"));
            }
        }
        if self.refresh_idle_ttl > self.refresh_absolute_ttl {
            return Err(bad(
                "signin.refresh_idle_ttl",
                "must be at most signin.refresh_absolute_ttl",
            ));
        }
        if self.refresh_reuse_grace > Duration::from_secs(60) {
            return Err(bad("signin.refresh_reuse_grace", "must be at most 60s"));
        }
        if self.throttle_per_account < 1 || self.throttle_per_address < 1 {
            return Err(bad(
                "signin.throttle_per_account",
                "limits must be at least 1",
            ));
        }
        let password = HashParams {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        };
        password
            .validate()
            .map_err(|e| bad("signin.argon2_memory_kib", &e.to_string()))?;
        let hashes = if self.max_concurrent_hashes == 0 {
            std::thread::available_parallelism().map_or(2, usize::from)
        } else {
            self.max_concurrent_hashes
        };
        Ok(SigninSettings {
            code_ttl_secs: secs(self.code_ttl),
            session_ttl_secs: secs(self.session_ttl),
            id_token_ttl_secs: secs(self.id_token_ttl),
            refresh_idle_secs: secs(self.refresh_idle_ttl),
            refresh_absolute_secs: secs(self.refresh_absolute_ttl),
            refresh_grace_secs: secs(self.refresh_reuse_grace),
            password,
            max_concurrent_hashes: hashes.clamp(1, 256),
            throttle: Limits {
                window_secs: secs(self.throttle_window),
                per_account: self.throttle_per_account,
                per_address: self.throttle_per_address,
            },
        })
    }
}
