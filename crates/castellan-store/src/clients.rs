//! OAuth clients.

use super::*;

impl Store {
    /// Adds a client; a taken name or id is a [`StoreError::Conflict`].
    pub async fn add_client(&self, row: &ClientRow) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        insert_client(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One client by id.
    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        let row = sqlx::query(concat!(client_select!(), " WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Every client, by name.
    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        let rows = sqlx::query(concat!(client_select!(), " ORDER BY name"))
            .fetch_all(self.pool()?)
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// The client with this id, or else the one with this name (the order [`Store::delete_client`]
    /// uses).
    pub async fn client_by_id_or_name(
        &self,
        id_or_name: &str,
    ) -> Result<Option<ClientRow>, StoreError> {
        if let Some(row) = self.client(id_or_name).await? {
            return Ok(Some(row));
        }
        sqlx::query(concat!(client_select!(), " WHERE name = $1"))
            .bind(id_or_name)
            .fetch_optional(self.pool()?)
            .await?
            .map(|r| client_from_row(&r))
            .transpose()
    }

    /// Deletes a client by id or name; returns whether one was deleted.
    pub async fn delete_client(&self, id_or_name: &str) -> Result<bool, StoreError> {
        // The id first, and the name only when no id matched: one call deletes one client, even where
        // an older store holds a client named like another's id.
        for by in [
            "DELETE FROM clients WHERE client_id = $1",
            "DELETE FROM clients WHERE name = $1",
        ] {
            let n = sqlx::query(by)
                .bind(id_or_name)
                .execute(self.pool()?)
                .await?
                .rows_affected();
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

pub(crate) async fn insert_client(tx: &mut Tx<'_>, row: &ClientRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO clients (client_id, name, secret_hash, scopes, audience, token_ttl_secs, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.client_id)
    .bind(&row.name)
    .bind(&row.secret_hash)
    .bind(&row.scopes)
    .bind(&row.audience)
    .bind(row.token_ttl_secs)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict(&format!("a client named `{}`", row.name)))?;
    if let Some(patterns) = &row.cert_names {
        sqlx::query("INSERT INTO client_cert_names (client_id, patterns) VALUES ($1, $2)")
            .bind(&row.client_id)
            .bind(patterns)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(policy) = &row.policy {
        sqlx::query(
            "INSERT INTO client_policies (client_id, audiences, sign_max_ttl_secs, sign_claims, \
             sign_sub, sign_typ, exchange_from) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.client_id)
        .bind(&policy.audiences)
        .bind(policy.sign_max_ttl_secs)
        .bind(&policy.sign_claims)
        .bind(&policy.sign_sub)
        .bind(&policy.sign_typ)
        .bind(&policy.exchange_from)
        .execute(&mut **tx)
        .await?;
    }
    if row.app != ClientApp::default() {
        sqlx::query(
            "INSERT INTO client_apps (client_id, redirect_uris, post_logout_redirect_uris, grant_types, \
             public_client, require_mfa, user_claims) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.client_id)
        .bind(&row.app.redirect_uris)
        .bind(&row.app.post_logout_redirect_uris)
        .bind(&row.app.grant_types)
        .bind(i64::from(row.app.public_client))
        .bind(i64::from(row.app.require_mfa))
        .bind(&row.app.user_claims)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) fn client_from_row(r: &AnyRow) -> Result<ClientRow, StoreError> {
    Ok(ClientRow {
        client_id: r.try_get("client_id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        scopes: r.try_get("scopes")?,
        audience: r.try_get("audience")?,
        token_ttl_secs: r.try_get("token_ttl_secs")?,
        created_at: r.try_get("created_at")?,
        app: ClientApp {
            redirect_uris: r.try_get("redirect_uris")?,
            post_logout_redirect_uris: r.try_get("post_logout_redirect_uris")?,
            grant_types: r.try_get("grant_types")?,
            public_client: r.try_get::<i64, _>("public_client")? != 0,
            require_mfa: r.try_get::<i64, _>("require_mfa")? != 0,
            user_claims: r.try_get("user_claims")?,
        },
        cert_names: r.try_get("cert_names")?,
        policy: client_policies::policy_from_row(r)?,
    })
}
