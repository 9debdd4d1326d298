//! The Vault-shaped API's part of the server's state (issue 20): its settings and this replica's
//! memory of the tokens it looked up (see [`crate::vault_tokens`] for the tokens themselves). It lives
//! below the state, which holds one, and below the token functions, which use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use castellan_store::VaultTokenRow;

use crate::config::vault::VaultSettings;

/// How long a replica trusts what it read of a token before it reads the store again.
pub const RECHECK: Duration = Duration::from_secs(2);
/// The most tokens remembered per replica; when full, the memory is cleared and refilled.
const REMEMBERED: usize = 4096;

/// The Vault-shaped API's settings and this replica's memory of tokens.
pub struct VaultLayer {
    settings: VaultSettings,
    remembered: Mutex<HashMap<Vec<u8>, (Arc<VaultTokenRow>, Instant)>>,
}

impl std::fmt::Debug for VaultLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl VaultLayer {
    /// A layer with these settings and nothing remembered.
    pub fn new(settings: VaultSettings) -> Self {
        Self {
            settings,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    pub(crate) fn remember(&self, row: Arc<VaultTokenRow>) {
        if let Ok(mut m) = self.remembered.lock() {
            if m.len() >= REMEMBERED {
                m.clear();
            }
            m.insert(row.token_hash.clone(), (row, Instant::now()));
        }
    }

    pub(crate) fn forget(&self, hash: &[u8]) {
        if let Ok(mut m) = self.remembered.lock() {
            m.remove(hash);
        }
    }

    pub(crate) fn recalled(&self, hash: &[u8]) -> Option<Arc<VaultTokenRow>> {
        let m = self.remembered.lock().ok()?;
        let (row, at) = m.get(hash)?;
        (at.elapsed() < RECHECK).then(|| row.clone())
    }
}
