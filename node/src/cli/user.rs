//! `yui user`: the people who sign in to the console or use the API, their
//! roles, passwords and API tokens.

use anyhow::{Context, Result};
use clap::Subcommand;

use super::cli_principal;
use crate::accounts::{Accounts, Principal, Role};
use crate::actions::{self, Action, Entry};
use crate::datadir::DataDir;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user. Asks for the password twice on a terminal; otherwise
    /// reads it from the first line of standard input (for scripts).
    /// Passwords need at least 10 characters.
    Add {
        /// Login name: lowercase letters, digits, '.', '_' or '-', starting
        /// with a letter (e.g. sato.hanako).
        name: String,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List the users, their roles, last login and any lock-out.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a user, ending their sessions and revoking their tokens. The
    /// last admin cannot be removed.
    Remove { name: String },
    /// Set a user's password (asked as for `add`). Ends their sessions and
    /// lifts a lock-out.
    Passwd { name: String },
    /// Change a user's role. Their tokens never act above it.
    Role {
        name: String,
        #[arg(value_enum)]
        role: Role,
    },
    /// Create an API token for a user and print it once (only a hash is
    /// kept). Scripts send it as 'Authorization: Bearer TOKEN'.
    Token {
        name: String,
        /// The token's role: at most the user's own (default: the user's role).
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// A name for the token, unique per user, to revoke it by later
        /// (default: the time it was made).
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke one of a user's API tokens by its label.
    RevokeToken {
        name: String,
        #[arg(long)]
        label: String,
    },
}

/// `yui user …`: straight on the database (its own connection, so a running
/// node need not be asked), audited as the command line.
pub(super) async fn run(data_dir: &DataDir, cmd: UserCommand) -> Result<()> {
    data_dir.open()?;
    let accounts = Accounts::open(data_dir)?;
    let cli = cli_principal();
    match cmd {
        UserCommand::Add { name, role } => {
            let password = read_new_password(&name)?;
            Action::UserAdd.check(&cli)?;
            accounts.add_user(&name, role, &password).await?;
            actions::audit(&accounts, &cli, &Entry::user_added(&name, role)).await;
            println!("Added user {name} with the {role} role.");
        }
        UserCommand::List { json } => list(&accounts, json).await?,
        UserCommand::Remove { name } => {
            Action::UserRemove.check(&cli)?;
            accounts.remove_user(&name).await?;
            actions::audit(&accounts, &cli, &Entry::user_removed(&name)).await;
            println!("Removed user {name}; their sessions and tokens no longer work.");
        }
        UserCommand::Passwd { name } => {
            // Fail on an unknown name before asking for a password.
            if !accounts.users().await?.iter().any(|u| u.name == name) {
                anyhow::bail!("no user named {name:?}; `yui user list` shows them");
            }
            let password = read_new_password(&name)?;
            Action::UserPasswd.check(&cli)?;
            accounts.set_password(&name, &password).await?;
            actions::audit(&accounts, &cli, &Entry::password_set(&name)).await;
            println!("Changed the password of {name}; their sessions have ended.");
        }
        UserCommand::Role { name, role } => {
            Action::UserRole.check(&cli)?;
            accounts.set_role(&name, role).await?;
            actions::audit(&accounts, &cli, &Entry::role_set(&name, role)).await;
            println!("{name} now has the {role} role.");
        }
        UserCommand::Token { name, role, label } => {
            create_token(&accounts, &cli, &name, role, label).await?;
        }
        UserCommand::RevokeToken { name, label } => {
            Action::TokenRevoke.check(&cli)?;
            accounts.revoke_token(&name, &label).await?;
            actions::audit(&accounts, &cli, &Entry::token_revoked(&name, &label)).await;
            println!("Revoked the token {label:?} of {name}.");
        }
    }
    Ok(())
}

async fn list(accounts: &Accounts, json: bool) -> Result<()> {
    let users = accounts.users().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&users)?);
    } else if users.is_empty() {
        println!("No users yet. Add one with `yui user add NAME --role admin`.");
    } else {
        for u in &users {
            let mut line = format!(
                "{:<20} {:<7} last login {}",
                u.name,
                u.role,
                u.last_login_at.as_deref().unwrap_or("never")
            );
            if let Some(until) = &u.locked_until {
                line.push_str(&format!("  LOCKED OUT until {until}"));
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// Prints the token alone on stdout (for scripts to capture) and the advice
/// on stderr.
async fn create_token(
    accounts: &Accounts,
    cli: &Principal,
    name: &str,
    role: Option<Role>,
    label: Option<String>,
) -> Result<()> {
    let role = match role {
        Some(role) => role,
        None => accounts
            .users()
            .await?
            .into_iter()
            .find(|u| u.name == name)
            .map(|u| u.role)
            .ok_or_else(|| anyhow::anyhow!("no user named {name:?}; `yui user list` shows them"))?,
    };
    let label = label.unwrap_or_else(|| yui_protocol::record::format_time(accounts.clock_ms()));
    Action::TokenCreate.check(cli)?;
    let token = accounts.create_token(name, role, &label).await?;
    actions::audit(accounts, cli, &Entry::token_created(name, &label, role)).await;
    println!("{token}");
    eprintln!(
        "This is the only time the token is shown. It acts for {name} with the {role} role; revoke it with `yui user revoke-token {name} --label {label:?}`."
    );
    Ok(())
}

/// A new password: asked twice without echo on a terminal, otherwise the
/// first line of standard input.
fn read_new_password(name: &str) -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let again = rpassword::prompt_password("The same password again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
