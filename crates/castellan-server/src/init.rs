//! `castellan init`: the key ring, the CA and the admin client, once per store.

use castellan_core::KeyType;
use castellan_core::envelope::{DataKey, MasterKey};
use castellan_core::token::Alg;
use castellan_store::{DataKeyRow, InitBundle, MasterKeyCheck, Store};
use zeroize::Zeroizing;

use crate::clients::{NewClient, new_client_row};
use crate::data_keys::check_master_key;
use crate::error::ServiceError;
use crate::keys::new_signing_key_row;

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
            app: None,
            cert_names: Vec::new(),
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
