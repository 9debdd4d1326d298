//! Client token policies (issue 18): one row per client that has one, read with the client.

use super::*;

impl Store {
    /// Sets (or, with `None`, removes) a client's token policy; `false` when no such client exists.
    pub async fn set_client_policy(
        &self,
        client_id: &str,
        policy: Option<&ClientPolicy>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let exists = sqlx::query("SELECT client_id FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        sqlx::query("DELETE FROM client_policies WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        if let Some(p) = policy {
            sqlx::query(
                "INSERT INTO client_policies (client_id, audiences, sign_max_ttl_secs, sign_claims, \
                 sign_sub, sign_typ, exchange_from) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(client_id)
            .bind(&p.audiences)
            .bind(p.sign_max_ttl_secs)
            .bind(&p.sign_claims)
            .bind(&p.sign_sub)
            .bind(&p.sign_typ)
            .bind(&p.exchange_from)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

/// The policy columns of a client row (all NULL when it has none).
pub(crate) fn policy_from_row(r: &AnyRow) -> Result<Option<ClientPolicy>, StoreError> {
    let Some(audiences) = r.try_get::<Option<String>, _>("policy_audiences")? else {
        return Ok(None);
    };
    Ok(Some(ClientPolicy {
        audiences,
        sign_max_ttl_secs: r.try_get("sign_max_ttl_secs")?,
        sign_claims: r.try_get("sign_claims")?,
        sign_sub: r.try_get("sign_sub")?,
        sign_typ: r.try_get("sign_typ")?,
        exchange_from: r.try_get("exchange_from")?,
    }))
}
