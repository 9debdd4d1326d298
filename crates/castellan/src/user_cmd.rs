//! `castellan user …`: people who sign in, on the store or through `--server` (`users:admin`).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use castellan_server::signin::Hashing;
use castellan_server::users;
use castellan_wire::users::{NewPassword, NewUser, UserInfo, UserList};
use clap::Subcommand;
use zeroize::Zeroizing;

use crate::Target;
use crate::common::{self, now};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// A unique sign-in name (letters, digits, '-', '_', '.', '@').
        name: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (the first line; never from an argument, which
        /// other local users can see). Without it the user cannot sign in until `user passwd`.
        #[arg(long)]
        password_stdin: bool,
        /// A claim apps may be configured to receive, as KEY=VALUE (repeat).
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
        /// A group (repeat); apps receive them as the `groups` claim.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// The user must sign in with a second factor (TOTP, enrolled on the account page).
        #[arg(long)]
        require_mfa: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Show one user (by name or id).
    Show {
        /// Name or id.
        user: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set a user's password (read from standard input).
    Passwd {
        /// Name or id.
        user: String,
        /// Read the password from standard input (required: passwords never go in arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Disable a user: no sign-in, and their sessions and refresh tokens end at once on every replica.
    Disable {
        /// Name or id.
        user: String,
        #[command(flatten)]
        target: Target,
    },
    /// Enable a disabled user again.
    Enable {
        /// Name or id.
        user: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a user with their sessions and refresh tokens.
    Delete {
        /// Name or id.
        user: String,
        #[command(flatten)]
        target: Target,
    },
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<Zeroizing<String>> {
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .take(4096)
        .read_to_string(&mut buf)
        .context("reading the password from standard input")?;
    let line = buf.lines().next().unwrap_or_default();
    if line.is_empty() {
        bail!("standard input held no password");
    }
    Ok(Zeroizing::new(line.to_owned()))
}

fn path_segment(user: &str) -> String {
    form_urlencoded::byte_serialize(user.as_bytes()).collect()
}

fn print_user(u: &UserInfo) {
    let safe = castellan_core::doctor::terminal_safe;
    println!("user_id:  {}", u.user_id);
    println!("name:     {}", safe(&u.name));
    if let Some(e) = &u.email {
        println!("email:    {}", safe(e));
    }
    println!("groups:   {}", safe(&u.groups.join(" ")));
    for (k, v) in &u.claims {
        println!("claim:    {}={}", safe(k), safe(v));
    }
    println!(
        "status:   {}{}{}",
        if u.disabled { "disabled" } else { "enabled" },
        if u.totp_enrolled {
            ", TOTP enrolled"
        } else {
            ""
        },
        if u.require_mfa {
            ", second factor required"
        } else {
            ""
        }
    );
}

pub async fn run(cmd: UserCommand) -> Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            name,
            email,
            password_stdin,
            claims,
            groups,
            require_mfa,
            json,
            target,
        } => {
            let mut map = BTreeMap::new();
            for c in claims {
                let (k, v) = c
                    .split_once('=')
                    .with_context(|| format!("--claim `{}` is not KEY=VALUE", c.escape_debug()))?;
                map.insert(k.to_owned(), v.to_owned());
            }
            let req = NewUser {
                name,
                email,
                password: password_stdin.then(password_from_stdin).transpose()?,
                groups,
                claims: map,
                require_mfa,
            };
            let created: UserInfo = if let Some(remote) = target.remote.client().await? {
                remote.post("/v1/users", &req).await?
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                let u =
                    users::create_user(&store, req, &Hashing::new(&cfg.signin.settings()?), now())
                        .await?;
                common::audited(&store, "user.create", format!("user {}", u.user_id)).await?;
                u
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                print_user(&created);
            }
        }
        UserCommand::List { json, target } => {
            let list = if let Some(remote) = target.remote.client().await? {
                remote.get::<UserList>("/v1/users").await?.users
            } else {
                let cfg = target.store.config()?;
                users::list_users(&common::open_store(&cfg).await?).await?
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&UserList { users: list })?
                );
            } else {
                println!("{:<28} {:<24} {:<9} GROUPS", "USER_ID", "NAME", "STATUS");
                for u in list {
                    println!(
                        "{:<28} {:<24} {:<9} {}",
                        u.user_id,
                        castellan_core::doctor::terminal_safe(&u.name),
                        if u.disabled { "disabled" } else { "enabled" },
                        castellan_core::doctor::terminal_safe(&u.groups.join(" "))
                    );
                }
            }
        }
        UserCommand::Show { user, target } => {
            let u = if let Some(remote) = target.remote.client().await? {
                remote
                    .get(&format!("/v1/users/{}", path_segment(&user)))
                    .await?
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                users::user_info(&users::find_user(&store, &user).await?)
            };
            print_user(&u);
        }
        UserCommand::Passwd { user, target, .. } => {
            let password = password_from_stdin()?;
            if let Some(remote) = target.remote.client().await? {
                remote
                    .send_empty(
                        reqwest::Method::PUT,
                        &format!("/v1/users/{}/password", path_segment(&user)),
                        &NewPassword { password },
                    )
                    .await?;
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                users::set_password(
                    &store,
                    &user,
                    password,
                    &Hashing::new(&cfg.signin.settings()?),
                    now(),
                )
                .await?;
                common::audited(&store, "user.passwd", format!("user {user}")).await?;
            }
            println!(
                "password changed for {}",
                castellan_core::doctor::terminal_safe(&user)
            );
        }
        UserCommand::Disable { user, target } => set_disabled(&user, true, target).await?,
        UserCommand::Enable { user, target } => set_disabled(&user, false, target).await?,
        UserCommand::Delete { user, target } => {
            if let Some(remote) = target.remote.client().await? {
                remote
                    .delete(&format!("/v1/users/{}", path_segment(&user)))
                    .await?;
            } else {
                let cfg = target.store.config()?;
                let store = common::open_store(&cfg).await?;
                users::delete_user(&store, &user).await?;
                common::audited(&store, "user.delete", format!("user {user}")).await?;
            }
            println!(
                "deleted user {}",
                castellan_core::doctor::terminal_safe(&user)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_disabled(user: &str, disabled: bool, target: Target) -> Result<()> {
    let verb = if disabled { "disable" } else { "enable" };
    let u: UserInfo = if let Some(remote) = target.remote.client().await? {
        remote
            .post(
                &format!("/v1/users/{}/{verb}", path_segment(user)),
                &serde_json::json!({}),
            )
            .await?
    } else {
        let cfg = target.store.config()?;
        let store = common::open_store(&cfg).await?;
        let u = users::set_disabled(&store, user, disabled, now()).await?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        common::audited(&store, action, format!("user {}", u.user_id)).await?;
        u
    };
    println!(
        "{} {}{}",
        castellan_core::doctor::terminal_safe(&u.name),
        if disabled { "disabled" } else { "enabled" },
        if disabled {
            "; their sessions and refresh tokens have ended"
        } else {
            ""
        }
    );
    Ok(())
}
