//! Certificate authorities, the certificate inventory and CRLs.

use super::*;

impl Store {
    /// The issuing CA: the newest one.
    pub async fn active_ca(&self) -> Result<Option<CaRow>, StoreError> {
        let row = sqlx::query(concat!(
            ca_select!(),
            " ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .fetch_optional(self.pool()?)
        .await?;
        row.as_ref().map(ca_from_row).transpose()
    }

    /// Adds a CA (it becomes the issuing one if it is the newest).
    pub async fn add_ca(&self, row: &CaRow) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        insert_ca(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an issued certificate.
    pub async fn add_certificate(&self, row: &CertRow) -> Result<(), StoreError> {
        self.add_certificates(std::slice::from_ref(row)).await
    }

    /// Records several issued certificates in one statement: all of them or, on any error, none.
    pub async fn add_certificates(
        &self,
        rows: &[impl std::borrow::Borrow<CertRow>],
    ) -> Result<(), StoreError> {
        insert_certificates(self.pool()?, rows).await
    }

    /// Issued certificates, soonest expiry first; with `not_after_before`, only those expiring before it.
    pub async fn certificates(
        &self,
        not_after_before: Option<i64>,
    ) -> Result<Vec<CertRow>, StoreError> {
        let rows = sqlx::query(concat!(
            cert_select!(),
            " WHERE not_after < $1 ORDER BY not_after, serial"
        ))
        .bind(not_after_before.unwrap_or(i64::MAX))
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// For each set of names certificates were issued for (profile, common name and SANs), the latest
    /// `not_after` of the ones not revoked: a certificate that ends before it has been renewed.
    pub async fn newest_expiry_by_names(&self) -> Result<Vec<NamesExpiry>, StoreError> {
        let rows = sqlx::query(
            "SELECT profile, common_name, sans, MAX(not_after) AS newest FROM certificates \
             WHERE revoked_at IS NULL GROUP BY profile, common_name, sans",
        )
        .fetch_all(self.pool()?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NamesExpiry {
                    profile: r.try_get("profile")?,
                    common_name: r.try_get("common_name")?,
                    sans: r.try_get("sans")?,
                    newest_not_after: r.try_get("newest")?,
                })
            })
            .collect()
    }

    /// One certificate by serial.
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertRow>, StoreError> {
        let row = sqlx::query(concat!(cert_select!(), " WHERE serial = $1"))
            .bind(serial)
            .fetch_optional(self.pool()?)
            .await?;
        row.as_ref().map(cert_from_row).transpose()
    }

    /// Revokes a certificate.
    pub async fn revoke_certificate(
        &self,
        serial: &str,
        at: i64,
        reason: Option<&str>,
    ) -> Result<Revocation, StoreError> {
        let n = sqlx::query(
            "UPDATE certificates SET revoked_at = $2, revocation_reason = $3 WHERE serial = $1 AND revoked_at IS NULL",
        )
        .bind(serial)
        .bind(at)
        .bind(reason)
        .execute(self.pool()?)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(Revocation::Revoked);
        }
        Ok(match self.certificate(serial).await? {
            Some(_) => Revocation::AlreadyRevoked,
            None => Revocation::NotFound,
        })
    }

    /// Revoked certificates of a CA that have not expired before `now`.
    pub async fn revoked_certificates(
        &self,
        ca_id: &str,
        now: i64,
    ) -> Result<Vec<CertRow>, StoreError> {
        let rows = sqlx::query(concat!(
            cert_select!(),
            " WHERE ca_id = $1 AND revoked_at IS NOT NULL AND not_after > $2 ORDER BY serial"
        ))
        .bind(ca_id)
        .bind(now)
        .fetch_all(self.pool()?)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// The newest CRL of a CA.
    pub async fn latest_crl(&self, ca_id: &str) -> Result<Option<CrlRow>, StoreError> {
        let row = sqlx::query(
            "SELECT ca_id, crl_number, der, pem, this_update, next_update FROM crls WHERE ca_id = $1 \
             ORDER BY crl_number DESC LIMIT 1",
        )
        .bind(ca_id)
        .fetch_optional(self.pool()?)
        .await?;
        row.map(|r| {
            Ok(CrlRow {
                ca_id: r.try_get("ca_id")?,
                crl_number: r.try_get("crl_number")?,
                der: r.try_get("der")?,
                pem: r.try_get("pem")?,
                this_update: r.try_get("this_update")?,
                next_update: r.try_get("next_update")?,
            })
        })
        .transpose()
    }

    /// Stores a CRL; `false` when another process stored that CRL number first (build the next one).
    pub async fn add_crl(&self, row: &CrlRow) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO crls (ca_id, crl_number, der, pem, this_update, next_update) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&row.ca_id)
        .bind(row.crl_number)
        .bind(&row.der)
        .bind(&row.pem)
        .bind(row.this_update)
        .bind(row.next_update)
        .execute(self.pool()?)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}

/// The one INSERT of [`Store::add_certificates`], on a pool or on a kept connection.
pub(crate) async fn insert_certificates<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    rows: &[impl std::borrow::Borrow<CertRow>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO certificates (serial, ca_id, profile, common_name, sans, not_before, not_after, cert_pem, \
         revoked_at, revocation_reason, created_at) VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 11;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 1..=11 {
            if c > 1 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(b + c).to_string());
        }
        sql.push(')');
    }
    // Only `$n` placeholders are added to the fixed text: no value is ever part of the SQL.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        let row = row.borrow();
        q = q
            .bind(&row.serial)
            .bind(&row.ca_id)
            .bind(&row.profile)
            .bind(&row.common_name)
            .bind(&row.sans)
            .bind(row.not_before)
            .bind(row.not_after)
            .bind(&row.cert_pem)
            .bind(row.revoked_at)
            .bind(&row.revocation_reason)
            .bind(row.created_at);
    }
    q.execute(executor)
        .await
        .map_err(conflict("a certificate with this serial"))?;
    Ok(())
}

/// A passive checkpoint of SQLite's write-ahead log: copies committed pages into the database file
/// without waiting for readers or writers.
pub(crate) async fn wal_checkpoint<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(executor)
        .await?;
    Ok(())
}

pub(crate) async fn insert_ca(tx: &mut Tx<'_>, row: &CaRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cas (id, ca_cert_pem, intermediates_pem, root_pem, dek_id, sealed_key, root_sealed_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(&row.ca_cert_pem)
    .bind(&row.intermediates_pem)
    .bind(&row.root_pem)
    .bind(&row.dek_id)
    .bind(&row.sealed_key)
    .bind(&row.root_sealed_key)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict("CA"))?;
    Ok(())
}

pub(crate) fn ca_from_row(r: &AnyRow) -> Result<CaRow, StoreError> {
    Ok(CaRow {
        id: r.try_get("id")?,
        ca_cert_pem: r.try_get("ca_cert_pem")?,
        intermediates_pem: r.try_get("intermediates_pem")?,
        root_pem: r.try_get("root_pem")?,
        dek_id: r.try_get("dek_id")?,
        sealed_key: r.try_get("sealed_key")?,
        root_sealed_key: r.try_get("root_sealed_key")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn cert_from_row(r: &AnyRow) -> Result<CertRow, StoreError> {
    Ok(CertRow {
        serial: r.try_get("serial")?,
        ca_id: r.try_get("ca_id")?,
        profile: r.try_get("profile")?,
        common_name: r.try_get("common_name")?,
        sans: r.try_get("sans")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        cert_pem: r.try_get("cert_pem")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
        created_at: r.try_get("created_at")?,
    })
}
