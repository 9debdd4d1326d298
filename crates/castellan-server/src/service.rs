//! The service layer: one function per use case, shared by the HTTP handlers and the CLI (which may
//! work on the store directly, even while a server runs on it).

use std::collections::HashMap;
use std::sync::Arc;

use castellan_core::envelope::{DataKey, MasterKey};
use castellan_core::keyring::{KeyRing, RingKey};
use castellan_core::keys::{Alg, KeyType, SigningKey};
use castellan_core::secret;
use castellan_core::secret_store;
use castellan_store::{
    ClientRow, DataKeyRow, InitBundle, MasterKeyCheck, SigningKeyRow, Store, StoreError,
};
use zeroize::Zeroizing;

/// Errors of the service layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store holds no key ring.
    #[error(
        "the store holds no key ring: run `castellan init` against this store first (or `castellan serve --dev` for a throw-away embedded setup)"
    )]
    NotInitialized,
    /// The master key is not the one the store was initialized with.
    #[error(
        "the master key does not match the one this store was initialized with (check value {given}, store expects another); give every replica the same master key file"
    )]
    MasterKeyMismatch {
        /// The check value of the key given.
        given: String,
    },
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique value is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The state changed since the caller read it (a check-and-set failed).
    #[error("{0}")]
    Precondition(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The core failed (key generation, decryption).
    #[error(transparent)]
    Core(#[from] castellan_core::Error),
    /// A certificate request or CA was refused, or issuance failed.
    #[error(transparent)]
    Pki(#[from] castellan_core::pki::PkiError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ServiceError::Conflict(what),
            other => ServiceError::Store(other),
        }
    }
}

/// What `castellan init` asks for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Token signing algorithm.
    pub alg: Alg,
    /// Key type (default: the algorithm's).
    pub key_type: Option<KeyType>,
    /// Keep the root CA key out of the store: it is returned once (to be written offline) and never
    /// stored; only the intermediate signs.
    pub root_key_offline: bool,
}

/// The admin credential created by `init`. `Debug` hides the secret.
pub struct Credential {
    /// Client id.
    pub client_id: String,
    /// Client secret, shown once.
    pub client_secret: Zeroizing<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The result of `init`.
#[derive(Debug)]
pub struct InitOutcome {
    /// `None` when the store was initialized already (nothing changed).
    pub admin: Option<Credential>,
    /// The root CA key (PKCS#8 PEM) when it was asked to be kept offline and this call created it.
    pub root_key_pem: Option<Zeroizing<String>>,
}

/// True once `init` has run on this store.
pub async fn is_initialized(store: &Store) -> Result<bool, ServiceError> {
    Ok(store.meta("master_key_check").await?.is_some())
}

/// Checks the master key against the store.
pub async fn check_master_key(
    store: &Store,
    master: &MasterKey,
) -> Result<MasterKeyCheck, ServiceError> {
    let given = master.check_value();
    match store.check_master_key(&given).await? {
        MasterKeyCheck::Mismatch => Err(ServiceError::MasterKeyMismatch { given }),
        other => Ok(other),
    }
}

/// Initializes the store once: data key, token key ring, admin client. Idempotent and safe to race.
pub async fn initialize(
    store: &Store,
    master: &MasterKey,
    now: i64,
    opts: &InitOptions,
) -> Result<InitOutcome, ServiceError> {
    if check_master_key(store, master).await? == MasterKeyCheck::Matches {
        return Ok(InitOutcome {
            admin: None,
            root_key_pem: None,
        });
    }
    let dek = DataKey::generate()?;
    let (ca, root_key_pem) = crate::pki::new_ca_row(&dek, opts.root_key_offline, now)?;
    let data_key = DataKeyRow {
        id: dek.id().to_owned(),
        wrapped: master.wrap(&dek)?,
        created_at: now,
    };
    let signing_key = new_signing_key_row(&dek, opts.alg, opts.key_type, now, now)?;
    let (admin_client, admin_secret) = new_client_row(
        NewClient {
            name: "admin".into(),
            scopes: vec!["admin".into()],
            audience: None,
            token_ttl_secs: None,
        },
        now,
    )?;
    let bundle = InitBundle {
        master_key_check: master.check_value(),
        data_key,
        signing_key,
        admin_client: admin_client.clone(),
        meta: vec![("initialized_at".into(), now.to_string())],
        ca,
    };
    if store.initialize(&bundle).await? {
        Ok(InitOutcome {
            admin: Some(Credential {
                client_id: admin_client.client_id,
                client_secret: admin_secret,
            }),
            root_key_pem,
        })
    } else {
        // Another process won the race; its master key must be ours too.
        check_master_key(store, master).await?;
        Ok(InitOutcome {
            admin: None,
            root_key_pem: None,
        })
    }
}

/// Generates a signing key and seals it under `dek`.
pub fn new_signing_key_row(
    dek: &DataKey,
    alg: Alg,
    key_type: Option<KeyType>,
    activate_at: i64,
    now: i64,
) -> Result<SigningKeyRow, ServiceError> {
    let (key, der) = SigningKey::generate(alg, key_type)?;
    let sealed_key = dek.seal(&signing_key_context(key.kid()), &der)?;
    Ok(SigningKeyRow {
        kid: key.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        dek_id: dek.id().to_owned(),
        sealed_key,
        activate_at,
        remove_at: None,
        revoked_at: None,
        created_at: now,
    })
}

fn signing_key_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// Changes the master key: every data key is unwrapped with `old` and wrapped with `new`, and the
/// store's check value becomes `new`'s, in one transaction. Nothing else is sealed by the master key,
/// so nothing else changes. Returns how many data keys were re-wrapped. Processes still holding `old`
/// keep what they loaded but can no longer open anything new; they must be restarted with `new`.
pub async fn change_master_key(
    store: &Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, ServiceError> {
    match check_master_key(store, old).await? {
        MasterKeyCheck::Uninitialized => return Err(ServiceError::NotInitialized),
        MasterKeyCheck::Matches | MasterKeyCheck::Mismatch => {}
    }
    if old.check_value() == new.check_value() {
        return Err(ServiceError::Invalid(
            "the new master key is the current one".into(),
        ));
    }
    let rows = store
        .data_keys()
        .await?
        .into_iter()
        .map(|row| {
            let dek = unwrap_data_key(old, &row)?;
            Ok(DataKeyRow {
                wrapped: new.wrap(&dek)?,
                ..row
            })
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;
    store
        .rewrap_data_keys(&old.check_value(), &new.check_value(), &rows)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(what) => ServiceError::Precondition(format!(
                "the store changed while the master key was being changed ({what}); nothing was changed, run it again"
            )),
            other => other.into(),
        })?;
    Ok(rows.len())
}

/// The newest data key, unwrapped: it seals what is written now.
pub async fn newest_data_key(store: &Store, master: &MasterKey) -> Result<DataKey, ServiceError> {
    let newest = store
        .data_keys()
        .await?
        .into_iter()
        .max_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        })
        .ok_or(ServiceError::NotInitialized)?;
    unwrap_data_key(master, &newest)
}

/// Unwraps one data key (the others stay wrapped).
pub async fn data_key(
    store: &Store,
    master: &MasterKey,
    id: &str,
) -> Result<DataKey, ServiceError> {
    let row = store
        .data_keys()
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ServiceError::NotFound(format!("data key {id}")))?;
    unwrap_data_key(master, &row)
}

/// Unwraps every data key.
pub async fn data_keys(
    store: &Store,
    master: &MasterKey,
) -> Result<HashMap<String, DataKey>, ServiceError> {
    store
        .data_keys()
        .await?
        .iter()
        .map(|row| Ok((row.id.clone(), unwrap_data_key(master, row)?)))
        .collect()
}

/// A data key row opened with the master key; one that does not open means another master key.
fn unwrap_data_key(master: &MasterKey, row: &DataKeyRow) -> Result<DataKey, ServiceError> {
    master
        .unwrap(&row.id, &row.wrapped)
        .map_err(|_| ServiceError::MasterKeyMismatch {
            given: master.check_value(),
        })
}

/// Loads the published key ring, reusing already-parsed keys from `previous` by kid.
pub async fn load_key_ring(
    store: &Store,
    master: &MasterKey,
    now: i64,
    previous: Option<&KeyRing>,
) -> Result<KeyRing, ServiceError> {
    if check_master_key(store, master).await? == MasterKeyCheck::Uninitialized {
        return Err(ServiceError::NotInitialized);
    }
    let rows = store.published_signing_keys(now).await?;
    let mut deks: Option<HashMap<String, DataKey>> = None;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let key = match previous.and_then(|p| p.get(&row.kid)) {
            Some(k) => k.key.clone(),
            None => {
                if deks.is_none() {
                    deks = Some(data_keys(store, master).await?);
                }
                let dek = deks
                    .as_ref()
                    .and_then(|d| d.get(&row.dek_id))
                    .ok_or_else(|| {
                        ServiceError::NotFound(format!(
                            "data key {} of signing key {}",
                            row.dek_id, row.kid
                        ))
                    })?;
                let der = dek.open(&signing_key_context(&row.kid), &row.sealed_key)?;
                let alg: Alg = row.alg.parse()?;
                let key = SigningKey::from_pkcs8(alg, &der)?;
                if key.kid() != row.kid {
                    return Err(ServiceError::Invalid(format!(
                        "stored key {} does not match its kid",
                        row.kid
                    )));
                }
                Arc::new(key)
            }
        };
        keys.push(RingKey {
            key,
            activate_at: row.activate_at,
            remove_at: row.remove_at,
        });
    }
    if keys.is_empty() {
        return Err(ServiceError::NotInitialized);
    }
    Ok(KeyRing::new(keys)?)
}

/// A client to create.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    /// Unique name.
    pub name: String,
    /// Scopes it may ask for.
    pub scopes: Vec<String>,
    /// `aud` of its tokens; the issuer when unset.
    #[serde(default)]
    pub audience: Option<String>,
    /// Token lifetime in seconds; the server default when unset.
    #[serde(default)]
    pub token_ttl_secs: Option<i64>,
}

/// A client as shown to people (no secret, no hash).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    /// Client id.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Audience, if set.
    pub audience: Option<String>,
    /// Token lifetime, seconds (0: the server default).
    pub token_ttl_secs: i64,
    /// Creation time.
    pub created_at: i64,
}

impl From<&ClientRow> for ClientInfo {
    fn from(c: &ClientRow) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            scopes: c.scopes.split_whitespace().map(str::to_owned).collect(),
            audience: c.audience.clone(),
            token_ttl_secs: c.token_ttl_secs,
            created_at: c.created_at,
        }
    }
}

/// A newly created client with its secret, shown once.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CreatedClient {
    /// The client.
    #[serde(flatten)]
    pub client: ClientInfo,
    /// The secret; not stored, only its hash is.
    pub client_secret: String,
}

impl std::fmt::Debug for CreatedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedClient")
            .field("client", &self.client)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// True for an RFC 6749 scope-token.
pub fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether a caller whose token holds `holder` (space-separated scopes) may give a new client `scope`.
///
/// Castellan's own scopes (`admin`, and those under `clients:`, `keys:`, `pki:` and `secrets:`) are
/// given only by a caller who holds them itself: `admin` holds every one, `secrets:read` covers
/// `secrets:read:PREFIX`, and `secrets:read:mqtt` covers `secrets:read:mqtt/broker` (whole segments,
/// as for the secrets themselves). So `clients:admin` alone cannot make an `admin` client. Any other
/// scope is an application's (`invoices:read`): `clients:admin` gives those freely.
pub fn may_grant(holder: &str, scope: &str) -> bool {
    let own = scope == "admin"
        || ["clients:", "keys:", "pki:", "secrets:"]
            .iter()
            .any(|ns| scope.starts_with(ns));
    if !own {
        return true;
    }
    if holder.split(' ').any(|h| h == "admin" || h == scope) {
        return true;
    }
    // `secrets:read:PREFIX` is given by a holder whose scopes would let it read a secret named
    // PREFIX: the same whole-segment rule as for the secrets themselves.
    [
        ("secrets:read:", secret_store::Access::Read),
        ("secrets:write:", secret_store::Access::Write),
    ]
    .iter()
    .any(|(base, access)| {
        scope
            .strip_prefix(base)
            .is_some_and(|asked| secret_store::scopes_allow(holder, *access, asked))
    })
}

fn new_client_row(
    req: NewClient,
    now: i64,
) -> Result<(ClientRow, Zeroizing<String>), ServiceError> {
    if req.name.is_empty()
        || req.name.len() > 64
        || !req
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ServiceError::Invalid(
            "client name must be 1-64 characters of letters, digits, '-', '_' and '.'".into(),
        ));
    }
    if req.name.starts_with("cl_") {
        // `client delete` takes an id or a name: a name that looks like an id could name another
        // client.
        return Err(ServiceError::Invalid(
            "client names may not start with `cl_`, the prefix of client ids".into(),
        ));
    }
    if req.scopes.is_empty() {
        return Err(ServiceError::Invalid(
            "a client needs at least one scope".into(),
        ));
    }
    if let Some(bad) = req.scopes.iter().find(|s| !valid_scope_token(s)) {
        return Err(ServiceError::Invalid(format!(
            "`{bad}` is not a valid scope (no spaces, quotes or backslashes)"
        )));
    }
    if let Some(aud) = &req.audience
        && (aud.is_empty() || aud.len() > 512 || aud.chars().any(char::is_whitespace))
    {
        return Err(ServiceError::Invalid(
            "audience must be 1-512 characters without spaces".into(),
        ));
    }
    let ttl = req.token_ttl_secs.unwrap_or(0);
    if ttl < 0 {
        return Err(ServiceError::Invalid("token TTL must be positive".into()));
    }
    let secret = secret::generate_secret()?;
    let row = ClientRow {
        client_id: secret::random_id("cl_", 12)?,
        name: req.name,
        secret_hash: secret::hash_secret(&secret),
        scopes: req.scopes.join(" "),
        audience: req.audience,
        token_ttl_secs: ttl,
        created_at: now,
    };
    Ok((row, secret))
}

/// Creates a client; `max_ttl_secs` bounds its token lifetime.
pub async fn create_client(
    store: &Store,
    req: NewClient,
    max_ttl_secs: i64,
    now: i64,
) -> Result<CreatedClient, ServiceError> {
    if let Some(ttl) = req.token_ttl_secs
        && ttl > max_ttl_secs
    {
        return Err(ServiceError::Invalid(format!(
            "token TTL {ttl}s is above the maximum of {max_ttl_secs}s (tokens.max_ttl)"
        )));
    }
    let (row, secret) = new_client_row(req, now)?;
    store.add_client(&row).await?;
    Ok(CreatedClient {
        client: ClientInfo::from(&row),
        client_secret: secret.to_string(),
    })
}

/// Lists clients.
pub async fn list_clients(store: &Store) -> Result<Vec<ClientInfo>, ServiceError> {
    Ok(store
        .clients()
        .await?
        .iter()
        .map(ClientInfo::from)
        .collect())
}

/// Deletes a client by id or name.
pub async fn delete_client(store: &Store, id_or_name: &str) -> Result<(), ServiceError> {
    if store.delete_client(id_or_name).await? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("client `{id_or_name}`")))
    }
}
