//! Passwords, hashed with argon2id (RFC 9106) as PHC strings; checked by the hash library.
//!
//! The parameters default to OWASP's first recommendation (19 MiB, 2 passes, 1 lane); a stored hash
//! carries its own, so changing them affects new hashes only, and [`needs_rehash`] says when a
//! successful sign-in should store a new one.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::Error;

/// argon2id parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP Password Storage Cheat Sheet: m = 19456 KiB, t = 2, p = 1.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Why a password or its parameters were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordError {
    /// Outside argon2's limits, or weaker than the floor (8 MiB, 1 pass).
    #[error(
        "argon2id parameters out of range (memory ≥ 8192 KiB, iterations ≥ 1, parallelism 1-16)"
    )]
    Params,
    /// Too short or too long to be a password.
    #[error("a password must be 8 to 1024 characters")]
    Length,
    /// Hashing failed (randomness or the library).
    #[error("the password could not be hashed")]
    Hash,
}

impl HashParams {
    fn argon2(&self) -> Result<Argon2<'static>, PasswordError> {
        if self.memory_kib < 8192 || self.iterations < 1 || !(1..=16).contains(&self.parallelism) {
            return Err(PasswordError::Params);
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|_| PasswordError::Params)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks the parameters (at configuration time).
    pub fn validate(&self) -> Result<(), PasswordError> {
        self.argon2().map(|_| ())
    }
}

/// Checks a new password's length (characters, not bytes).
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if (8..=1024).contains(&n) {
        Ok(())
    } else {
        Err(PasswordError::Length)
    }
}

/// Hashes a password with a fresh random salt: a PHC string (`$argon2id$v=19$m=…`).
pub fn hash_password(password: &str, params: &HashParams) -> Result<String, PasswordError> {
    let mut salt = Zeroizing::new([0u8; 16]);
    aws_lc_rs::rand::fill(salt.as_mut()).map_err(|_| PasswordError::Hash)?;
    let salt = SaltString::encode_b64(salt.as_ref()).map_err(|_| PasswordError::Hash)?;
    params
        .argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Checks a password against a stored PHC string (the library computes the hash; its `Output`
/// compares in constant time). A string that is not an argon2id hash verifies nothing.
///
/// The argon2 memory (19 MiB with the default parameters) is this thread's own, kept between calls:
/// a thread that checks passwords holds one such block instead of allocating and freeing it for every
/// sign-in (the allocator kept each freed block in the arena of whichever thread last used it, so a
/// burst of sign-ins grew the process far beyond the hashes actually running at once).
pub fn verify_password(password: &str, phc: &str) -> bool {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&hash), hash.salt, hash.hash)
    else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let argon2 = Argon2::new(Algorithm::Argon2id, version, params.clone());
    let computed = MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        let blocks = params.block_count();
        if m.len() < blocks {
            m.resize(blocks, argon2::Block::default());
        }
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut m[..blocks])
            .is_ok()
    });
    computed && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

/// Whether a stored hash was made with other parameters than `params` (so a sign-in that just
/// proved the password should store a new hash).
pub fn needs_rehash(phc: &str, params: &HashParams) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(stored) = Params::try_from(&hash) else {
        return true;
    };
    stored.m_cost() != params.memory_kib
        || stored.t_cost() != params.iterations
        || stored.p_cost() != params.parallelism
}

/// A hash of a password nobody knows, with `params`: checked against when no such user exists, so a
/// sign-in for an unknown name costs what one for a known name costs.
pub fn decoy_hash(params: &HashParams) -> Result<String, Error> {
    let mut pw = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(pw.as_mut()).map_err(|_| Error::KeyGeneration)?;
    hash_password(&hex::encode(pw.as_ref()), params).map_err(|_| Error::KeyGeneration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> HashParams {
        HashParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse", &fast()).expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsE", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        // Two hashes of one password differ (salt).
        assert_ne!(h, hash_password("correct horse", &fast()).expect("hash"));
    }

    #[test]
    fn the_thread_s_reused_memory_agrees_with_the_library_across_parameters() {
        use argon2::password_hash::PasswordVerifier;
        let bigger = HashParams {
            memory_kib: 16384,
            iterations: 2,
            parallelism: 2,
        };
        // One thread, three sizes in turn: the buffer grows, then serves a smaller hash.
        for params in [fast(), bigger, fast()] {
            let h = hash_password("correct horse", &params).expect("hash");
            let parsed = PasswordHash::new(&h).expect("phc");
            for pw in ["correct horse", "correct horsE", ""] {
                let library = Argon2::default()
                    .verify_password(pw.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(verify_password(pw, &h), library, "{pw:?} {h}");
            }
            // A changed hash byte or salt verifies nothing.
            let cut = h.rfind('$').expect("$");
            let mut tampered = h.clone();
            let c = if &h[cut + 1..cut + 2] == "A" {
                "B"
            } else {
                "A"
            };
            tampered.replace_range(cut + 1..cut + 2, c);
            assert!(!verify_password("correct horse", &tampered));
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        // An argon2i hash of the same password is not accepted as an argon2id one.
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8192, 1, 1, None).expect("params"),
        )
        .hash_password(b"pw-pw-pw-pw", &salt)
        .expect("hash")
        .to_string();
        assert!(!verify_password("pw-pw-pw-pw", &i));
    }

    #[test]
    fn parameters_and_lengths_are_checked() {
        assert_eq!(
            HashParams {
                memory_kib: 1024,
                ..fast()
            }
            .validate(),
            Err(PasswordError::Params)
        );
        assert!(HashParams::default().validate().is_ok());
        assert_eq!(check_new_password("short"), Err(PasswordError::Length));
        assert!(check_new_password("long enough").is_ok());
        let h = hash_password("correct horse", &fast()).expect("hash");
        assert!(!needs_rehash(&h, &fast()));
        assert!(needs_rehash(&h, &HashParams::default()));
    }
}
