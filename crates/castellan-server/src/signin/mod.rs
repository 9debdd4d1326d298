//! Sign-in for people: the authorization code flow's use cases below HTTP.
//!
//! [`authorize`] checks an authorization request and decides between a code and the login page;
//! [`login`] checks a password (and a second factor) and makes the session; [`grants`] are the token
//! endpoint's `authorization_code` and `refresh_token` grants; [`introspection`] answers userinfo,
//! revocation and introspection. Every piece of state a replica
//! must share (sessions, codes, grants, failure counters) is in the store and read by its key on
//! each request, so a session made on one replica is valid on all, and one ended is ended on all.

use std::sync::OnceLock;

use castellan_core::secret;
use castellan_core::signin::password::HashParams;
use castellan_core::signin::throttle::Limits;
use zeroize::Zeroizing;

pub mod account;
pub mod authorize;
pub mod grants;
mod hash_pool;
pub mod introspection;
pub mod login;
pub mod upstream;
pub mod upstream_provider;

/// The settings of sign-in (from `[signin]`).
#[derive(Debug, Clone)]
pub struct SigninSettings {
    /// Authorization code lifetime, seconds (≤ 60).
    pub code_ttl_secs: i64,
    /// Session lifetime.
    pub session_ttl_secs: i64,
    /// ID token lifetime.
    pub id_token_ttl_secs: i64,
    /// Refresh token idle lifetime.
    pub refresh_idle_secs: i64,
    /// Refresh family absolute lifetime.
    pub refresh_absolute_secs: i64,
    /// Grace window for concurrent refreshes (0: off).
    pub refresh_grace_secs: i64,
    /// argon2id parameters for new hashes.
    pub password: HashParams,
    /// Password hashes at once.
    pub max_concurrent_hashes: usize,
    /// Failed sign-in throttling.
    pub throttle: Limits,
}

impl Default for SigninSettings {
    fn default() -> Self {
        Self {
            code_ttl_secs: 60,
            session_ttl_secs: 12 * 3600,
            id_token_ttl_secs: 300,
            refresh_idle_secs: 7 * 86_400,
            refresh_absolute_secs: 30 * 86_400,
            refresh_grace_secs: 0,
            password: HashParams::default(),
            max_concurrent_hashes: 2,
            throttle: Limits::default(),
        }
    }
}

/// One process's means of hashing and checking passwords: a fixed pool of `max_concurrent_hashes`
/// threads (each hash takes the configured argon2 memory; the pool's queue is the only bound, so a
/// burst of sign-ins waits instead of allocating), and a decoy hash for names that do not exist.
/// Sign-ins, `/v1/users` and the CLI's `user create/passwd` all hash here.
pub struct Hashing {
    pool: hash_pool::HashPool,
    decoy: OnceLock<String>,
    params: HashParams,
}

impl Hashing {
    /// The hashing of a server with these sign-in settings.
    pub fn new(settings: &SigninSettings) -> Self {
        Self::with_params(settings.password, settings.max_concurrent_hashes)
    }

    /// `threads` hashing threads with `params`.
    pub fn with_params(params: HashParams, threads: usize) -> Self {
        Self {
            pool: hash_pool::HashPool::new(threads),
            decoy: OnceLock::new(),
            params,
        }
    }

    /// Checks `password` against `phc` (the decoy when `None`) on a hashing thread (queued until
    /// one is free: at most `max_concurrent_hashes` run at once, whatever the number of sign-ins).
    pub(crate) async fn verify(&self, password: Zeroizing<String>, phc: Option<String>) -> bool {
        let params = self.params;
        let decoy = phc.is_none().then(|| {
            self.decoy
                .get_or_init(|| {
                    castellan_core::signin::password::decoy_hash(&params).unwrap_or_default()
                })
                .clone()
        });
        let phc = phc.or(decoy).unwrap_or_default();
        self.pool
            .run(move || castellan_core::signin::password::verify_password(&password, &phc))
            .await
            .unwrap_or(false)
    }

    /// A new hash of `password` with the configured parameters, on the same threads as
    /// [`Hashing::verify`] (`None`: the hash failed).
    pub async fn hash(&self, password: Zeroizing<String>) -> Option<String> {
        let params = self.params;
        self.pool
            .run(move || castellan_core::signin::password::hash_password(&password, &params).ok())
            .await
            .flatten()
    }

    /// Whether `phc` was made with other parameters than the configured ones (it is then hashed
    /// anew at the next successful sign-in).
    pub(crate) fn outdated(&self, phc: &str) -> bool {
        castellan_core::signin::password::needs_rehash(phc, &self.params)
    }
}

/// A new opaque token (code, refresh token, session cookie): the value to hand out once, and the
/// SHA-256 the store keeps.
pub(crate) fn opaque() -> Result<(Zeroizing<String>, Vec<u8>), castellan_core::Error> {
    let value = secret::generate_secret()?;
    let hash = secret::hash_secret(&value);
    Ok((value, hash))
}
