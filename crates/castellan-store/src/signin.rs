//! Sessions, authorization codes, grants (refresh token families) and failed sign-in counters.
//!
//! Every row is read by its key. A transaction that must decide on a row writes it first (a
//! conditional `UPDATE`), so on SQLite it holds the write lock from its first statement and waits
//! for other writers instead of failing, and on PostgreSQL two replicas racing on one code or one
//! refresh token are serialized by the row lock: exactly one of them wins.

use super::*;

macro_rules! session_select {
    () => {
        "SELECT sid, secret_hash, user_id, auth_time, amr, pending_mfa, created_at, last_seen_at, \
         expires_at, ended_at FROM sessions"
    };
}

macro_rules! grant_select {
    () => {
        "SELECT grant_id, client_id, user_id, sid, scope, auth_time, amr, created_at, expires_at, \
         revoked_at, revoked_why FROM grants"
    };
}

impl Store {
    /// Stores a new session.
    pub async fn add_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (sid, secret_hash, user_id, auth_time, amr, pending_mfa, created_at, \
             last_seen_at, expires_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&s.sid)
        .bind(&s.secret_hash)
        .bind(&s.user_id)
        .bind(s.auth_time)
        .bind(&s.amr)
        .bind(i64::from(s.pending_mfa))
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.ended_at)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    /// The session whose cookie hashes to `secret_hash`.
    pub async fn session_by_secret(
        &self,
        secret_hash: &[u8],
    ) -> Result<Option<SessionRow>, StoreError> {
        sqlx::query(concat!(session_select!(), " WHERE secret_hash = $1"))
            .bind(secret_hash)
            .fetch_optional(self.pool()?)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    /// The session with this public id.
    pub async fn session(&self, sid: &str) -> Result<Option<SessionRow>, StoreError> {
        sqlx::query(concat!(session_select!(), " WHERE sid = $1"))
            .bind(sid)
            .fetch_optional(self.pool()?)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    /// Completes a session's second factor: a new cookie value (a fresh id at sign-in), the methods
    /// used, and the time of authentication. Returns whether the pending session was still there.
    pub async fn complete_mfa(
        &self,
        sid: &str,
        new_secret_hash: &[u8],
        amr: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE sessions SET secret_hash = $2, amr = $3, auth_time = $4, last_seen_at = $4, \
             pending_mfa = 0 WHERE sid = $1 AND pending_mfa = 1 AND ended_at IS NULL",
        )
        .bind(sid)
        .bind(new_secret_hash)
        .bind(amr)
        .bind(now)
        .execute(self.pool()?)
        .await?
        .rows_affected()
            == 1)
    }

    /// Ends a session and revokes the grants made from it (RP-initiated logout). Returns whether a
    /// live session was ended.
    pub async fn end_session(&self, sid: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let n =
            sqlx::query("UPDATE sessions SET ended_at = $2 WHERE sid = $1 AND ended_at IS NULL")
                .bind(sid)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query(
            "UPDATE grants SET revoked_at = $2, revoked_why = 'logout' WHERE sid = $1 AND revoked_at IS NULL",
        )
        .bind(sid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Stores a new authorization code.
    pub async fn add_code(&self, c: &CodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, user_id, sid, redirect_uri, code_challenge, \
             scope, nonce, auth_time, amr, created_at, expires_at, used_at, grant_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(&c.sid)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(&c.scope)
        .bind(&c.nonce)
        .bind(c.auth_time)
        .bind(&c.amr)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.used_at)
        .bind(&c.grant_id)
        .execute(self.pool()?)
        .await?;
        Ok(())
    }

    /// The code hashing to `code_hash`.
    pub async fn code(&self, code_hash: &[u8]) -> Result<Option<CodeRow>, StoreError> {
        sqlx::query(
            "SELECT code_hash, client_id, user_id, sid, redirect_uri, code_challenge, scope, nonce, \
             auth_time, amr, created_at, expires_at, used_at, grant_id FROM auth_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(self.pool()?)
        .await?
        .as_ref()
        .map(code_from_row)
        .transpose()
    }

    /// Redeems a code once: marks it used and stores the grant (and its first refresh token) it
    /// starts. A code redeemed before is [`Redemption::Reused`], and the grant its first redemption
    /// started is revoked.
    pub async fn redeem_code(
        &self,
        code_hash: &[u8],
        now: i64,
        grant: &GrantRow,
        refresh: Option<&RefreshRow>,
    ) -> Result<Redemption, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let won = sqlx::query(
            "UPDATE auth_codes SET used_at = $2, grant_id = $3 WHERE code_hash = $1 AND used_at IS NULL",
        )
        .bind(code_hash)
        .bind(now)
        .bind(&grant.grant_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            sqlx::query(
                "UPDATE grants SET revoked_at = $2, revoked_why = 'code-reuse' \
                 WHERE revoked_at IS NULL AND grant_id = (SELECT grant_id FROM auth_codes WHERE code_hash = $1)",
            )
            .bind(code_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Redemption::Reused);
        }
        insert_grant(&mut tx, grant).await?;
        if let Some(r) = refresh {
            insert_refresh(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(Redemption::Redeemed)
    }

    /// One grant by id.
    pub async fn grant(&self, grant_id: &str) -> Result<Option<GrantRow>, StoreError> {
        sqlx::query(concat!(grant_select!(), " WHERE grant_id = $1"))
            .bind(grant_id)
            .fetch_optional(self.pool()?)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    /// A refresh token and its grant.
    pub async fn refresh_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(RefreshRow, GrantRow)>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT token_hash, grant_id, created_at, expires_at, used_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool()?)
        .await?
        else {
            return Ok(None);
        };
        let r = refresh_from_row(&r)?;
        Ok(self.grant(&r.grant_id).await?.map(|g| (r, g)))
    }

    /// Rotates a refresh token of `client_id`'s: the presented one (by hash) becomes used and `new_hash` takes its
    /// place, valid `idle_secs` but never past the grant's end. A token used before is reuse: the
    /// whole family is revoked, unless it was used less than `grace_secs` ago (concurrent refreshes
    /// of one token; 0 turns that off), which gets a token of its own.
    pub async fn rotate_refresh(
        &self,
        token_hash: &[u8],
        new_hash: &[u8],
        client_id: &str,
        idle_secs: i64,
        grace_secs: i64,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool()?.begin().await?;
        let won = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let Some(old) = sqlx::query(
            "SELECT token_hash, grant_id, created_at, expires_at, used_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(refresh_from_row)
        .transpose()?
        else {
            return Ok(Rotation::Invalid);
        };
        let grant = sqlx::query(concat!(grant_select!(), " WHERE grant_id = $1"))
            .bind(&old.grant_id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()?;
        let Some(grant) = grant.filter(|g| g.client_id == client_id) else {
            return Ok(Rotation::Invalid); // another client's token: dropped, nothing written
        };
        let Some(grant) = Some(grant).filter(|g| g.revoked_at.is_none() && g.expires_at > now)
        else {
            return Ok(Rotation::Invalid); // dropped: nothing written
        };
        let within_grace = grace_secs > 0
            && old.used_at.is_some_and(|u| now - u <= grace_secs)
            && old.expires_at > now;
        if !won && !within_grace {
            if old.used_at.is_none() {
                return Ok(Rotation::Invalid); // expired, never used
            }
            sqlx::query(
                "UPDATE grants SET revoked_at = $2, revoked_why = 'reuse' WHERE grant_id = $1 AND revoked_at IS NULL",
            )
            .bind(&grant.grant_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused);
        }
        let new = RefreshRow {
            token_hash: new_hash.to_vec(),
            grant_id: grant.grant_id.clone(),
            created_at: now,
            expires_at: (now + idle_secs).min(grant.expires_at),
            used_at: None,
        };
        insert_refresh(&mut tx, &new).await?;
        let user = crate::users::user_by_id(&mut *tx, &grant.user_id).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated {
            grant: Box::new(grant),
            user: user.map(Box::new),
        })
    }

    /// Revokes a grant (its whole refresh family); returns whether it was live.
    pub async fn revoke_grant(
        &self,
        grant_id: &str,
        why: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE grants SET revoked_at = $2, revoked_why = $3 WHERE grant_id = $1 AND revoked_at IS NULL",
        )
        .bind(grant_id)
        .bind(now)
        .bind(why)
        .execute(self.pool()?)
        .await?
        .rows_affected()
            == 1)
    }

    /// The failed sign-in counters of `keys` (absent ones are `None`).
    pub async fn signin_failures(
        &self,
        keys: &[&str],
    ) -> Result<Vec<Option<(i64, i64)>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let row: Option<(i64, i64)> =
                sqlx::query_as("SELECT window_start, failures FROM signin_failures WHERE key = $1")
                    .bind(*k)
                    .fetch_optional(self.pool()?)
                    .await?;
            out.push(row);
        }
        Ok(out)
    }

    /// Counts one failed sign-in for each of `keys` at `now`, in fixed windows of `window_secs`: a
    /// counter whose window is over starts a new one (atomically, for replicas counting together).
    pub async fn record_signin_failure(
        &self,
        keys: &[&str],
        window_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool()?.begin().await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO signin_failures (key, window_start, failures) VALUES ($1, $2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN signin_failures.window_start + $3 <= $2 THEN 1 ELSE signin_failures.failures + 1 END, \
                 window_start = CASE WHEN signin_failures.window_start + $3 <= $2 THEN $2 ELSE signin_failures.window_start END",
            )
            .bind(*k)
            .bind(now)
            .bind(window_secs)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes what has ended: codes, sessions, grants (with their refresh tokens) past their end by
    /// more than `keep_secs`, and failure counters older than `keep_secs`. Returns the rows deleted.
    pub async fn prune_signin(&self, now: i64, keep_secs: i64) -> Result<u64, StoreError> {
        let before = now - keep_secs;
        let mut n = 0;
        for sql in [
            "DELETE FROM auth_codes WHERE expires_at < $1",
            "DELETE FROM sessions WHERE expires_at < $1 OR ended_at < $1",
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM refresh_tokens WHERE grant_id IN \
             (SELECT grant_id FROM grants WHERE expires_at < $1 OR revoked_at < $1)",
            "DELETE FROM grants WHERE expires_at < $1 OR revoked_at < $1",
            "DELETE FROM signin_failures WHERE window_start < $1",
        ] {
            n += sqlx::query(sql)
                .bind(before)
                .execute(self.pool()?)
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}

async fn insert_grant(tx: &mut Tx<'_>, g: &GrantRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO grants (grant_id, client_id, user_id, sid, scope, auth_time, amr, created_at, \
         expires_at, revoked_at, revoked_why) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&g.grant_id)
    .bind(&g.client_id)
    .bind(&g.user_id)
    .bind(&g.sid)
    .bind(&g.scope)
    .bind(g.auth_time)
    .bind(&g.amr)
    .bind(g.created_at)
    .bind(g.expires_at)
    .bind(g.revoked_at)
    .bind(&g.revoked_why)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_refresh(tx: &mut Tx<'_>, r: &RefreshRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.token_hash)
    .bind(&r.grant_id)
    .bind(r.created_at)
    .bind(r.expires_at)
    .bind(r.used_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn session_from_row(r: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        sid: r.try_get("sid")?,
        secret_hash: r.try_get("secret_hash")?,
        user_id: r.try_get("user_id")?,
        auth_time: r.try_get("auth_time")?,
        amr: r.try_get("amr")?,
        pending_mfa: r.try_get::<i64, _>("pending_mfa")? != 0,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        expires_at: r.try_get("expires_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

fn code_from_row(r: &AnyRow) -> Result<CodeRow, StoreError> {
    Ok(CodeRow {
        code_hash: r.try_get("code_hash")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        sid: r.try_get("sid")?,
        redirect_uri: r.try_get("redirect_uri")?,
        code_challenge: r.try_get("code_challenge")?,
        scope: r.try_get("scope")?,
        nonce: r.try_get("nonce")?,
        auth_time: r.try_get("auth_time")?,
        amr: r.try_get("amr")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        grant_id: r.try_get("grant_id")?,
    })
}

pub(crate) fn grant_from_row(r: &AnyRow) -> Result<GrantRow, StoreError> {
    Ok(GrantRow {
        grant_id: r.try_get("grant_id")?,
        client_id: r.try_get("client_id")?,
        user_id: r.try_get("user_id")?,
        sid: r.try_get("sid")?,
        scope: r.try_get("scope")?,
        auth_time: r.try_get("auth_time")?,
        amr: r.try_get("amr")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_why: r.try_get("revoked_why")?,
    })
}

fn refresh_from_row(r: &AnyRow) -> Result<RefreshRow, StoreError> {
    Ok(RefreshRow {
        token_hash: r.try_get("token_hash")?,
        grant_id: r.try_get("grant_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
    })
}
