//! `/v1/users`: a user to create, a user as shown, a password change.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

/// A user to create (`POST /v1/users`).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique sign-in name.
    pub name: String,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// The password; none: the user cannot sign in until `user passwd`.
    #[serde(default)]
    pub password: Option<Zeroizing<String>>,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Claims (string values) apps may be configured to receive.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Must sign in with a second factor.
    #[serde(default)]
    pub require_mfa: bool,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// A password change (`PUT /v1/users/{name}/password`).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// The new password.
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

/// A user as shown (no password hash, no second-factor secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserInfo {
    /// Stable id: the `sub` of their tokens.
    pub user_id: String,
    /// Sign-in name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Claims.
    pub claims: BTreeMap<String, String>,
    /// Disabled: cannot sign in, sessions and refresh tokens ended.
    pub disabled: bool,
    /// Has enrolled a TOTP second factor.
    pub totp_enrolled: bool,
    /// Must sign in with a second factor.
    pub require_mfa: bool,
    /// Has a password.
    pub has_password: bool,
    /// Creation time.
    pub created_at: i64,
}

/// `GET /v1/users`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserList {
    /// Every user, by name.
    pub users: Vec<UserInfo>,
}
