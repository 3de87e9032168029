//! `tiklive login` and `tiklive logout`: turn the flags and the TikTok app's credentials into an
//! `oauth::OAuthClient` and run the desktop flow, a refresh, a status listing or a logout. Data (the
//! account, without its tokens) goes to stdout, as text or `--json`; the authorize URL, notes and
//! errors go to stderr.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::cli::{LoginArgs, LogoutArgs, OAuthAppArgs, OAuthArgs};
use crate::error::{Exit, Interrupted, UsageError, is_closed_pipe};
use crate::events::now_ms;
use crate::oauth::loopback::{DesktopLogin, LoopbackRedirect, desktop_login};
use crate::oauth::{
    AccountSummary, ChallengeEncoding, OAuthClient, OAuthConfig, OAuthError, Secret, flow,
};

use super::db_path;

pub fn run_login(args: LoginArgs) -> anyhow::Result<Exit> {
    if args.account.is_some() && !args.status && !args.refresh {
        return Err(UsageError(
            "ACCOUNT goes with --refresh or --status; `tiklive login` alone starts a new login"
                .into(),
        )
        .into());
    }
    let db = db_path(&args.oauth.db)?;
    if args.status {
        return status(&db, args.account.as_deref(), args.json);
    }
    // A blank TIKTOK_REDIRECT_URI (a copied .env.example) means the default.
    let redirect_uri = match args.redirect_uri.trim() {
        "" => crate::oauth::DEFAULT_REDIRECT_URI,
        uri => uri,
    };
    let client = client(&args.oauth, &args.scopes, redirect_uri)?;
    if args.refresh {
        let account = block_on(async {
            let account = flow::find_account(&db, args.account.as_deref()).await?;
            flow::refresh_now(&client, &db, &account.open_id).await
        })??;
        tracing::info!(account = %account.label(), "tokens refreshed");
        return print(&describe(&account.summary(now_ms()), args.json));
    }
    let options = DesktopLogin {
        redirect: LoopbackRedirect::parse(redirect_uri, args.port)?,
        timeout: args.timeout,
    };
    let no_browser = args.no_browser;
    let login = block_on(desktop_login(&client, &db, &options, |url| {
        announce(url, no_browser)
    }))??;
    for note in &login.notes {
        tracing::warn!("{note}");
    }
    tracing::info!(account = %login.account.label(), "logged in; tokens stored in {}", db.display());
    print(&describe(&login.account.summary(now_ms()), args.json))
}

pub fn run_logout(args: LogoutArgs) -> anyhow::Result<Exit> {
    let db = db_path(&args.oauth.db)?;
    let client = if args.local_only {
        None
    } else {
        Some(client(&args.oauth, crate::oauth::DEFAULT_SCOPES, "")?)
    };
    let outcome = block_on(async {
        let account = flow::find_account(&db, args.account.as_deref()).await?;
        flow::logout(client.as_ref(), &db, &account.open_id).await
    })??;
    let label = outcome.account.label();
    if let Some(note) = &outcome.note {
        tracing::warn!("{note}");
    }
    let text = if args.json {
        let object = serde_json::json!({
            "open_id": outcome.account.open_id,
            "username": outcome.account.username,
            "revoked": outcome.revoked,
            "deleted": true,
            "note": outcome.note,
        });
        format!("{object}\n")
    } else if outcome.revoked {
        format!("logged out {label}: revoked at TikTok and deleted here\n")
    } else {
        format!("logged out {label}: deleted here, not revoked at TikTok\n")
    };
    print(&text)
}

/// The client of the app named by the flags and `TIKTOK_CLIENT_*`.
fn client(args: &OAuthArgs, scopes: &str, redirect_uri: &str) -> Result<OAuthClient, OAuthError> {
    OAuthClient::new(oauth_config(
        &args.app,
        scopes,
        redirect_uri,
        args.http_timeout,
        args.refresh_before,
    ))
}

/// The configuration of the app named by the flags and `TIKTOK_CLIENT_*` (`serve` builds its own
/// with it too).
pub(crate) fn oauth_config(
    app: &OAuthAppArgs,
    scopes: &str,
    redirect_uri: &str,
    http_timeout: std::time::Duration,
    refresh_before: std::time::Duration,
) -> OAuthConfig {
    let non_empty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let client_key = non_empty(app.client_key.clone()).unwrap_or_default();
    // Never a flag: a command line is visible to every user of the machine.
    let secret = non_empty(std::env::var("TIKTOK_CLIENT_SECRET").ok()).unwrap_or_default();
    OAuthConfig {
        client_key: client_key.trim().to_owned(),
        client_secret: Secret::new(secret.trim()),
        redirect_uri: redirect_uri.to_owned(),
        scopes: OAuthConfig::parse_scopes(scopes),
        auth_url: app.auth_url.clone(),
        open_api_url: app.open_api_url.clone(),
        challenge: ChallengeEncoding::Hex,
        http_timeout,
        refresh_before,
    }
}

/// Runs a future on a runtime of its own; Ctrl-C ends it with exit 130.
fn block_on<T>(future: impl Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            value = future => Ok(value),
            _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
        }
    })
}

/// `login --status`: every account, or the one named.
fn status(db: &Path, account: Option<&str>, json: bool) -> anyhow::Result<Exit> {
    let now = now_ms();
    let accounts = block_on(async {
        match account {
            Some(spec) => flow::find_account(db, Some(spec)).await.map(|a| vec![a]),
            None => flow::list_accounts(db).await,
        }
    })??;
    if accounts.is_empty() {
        tracing::info!("no TikTok account is logged in: run `tiklive login`");
        return Ok(Exit::Success);
    }
    let summaries: Vec<AccountSummary> = accounts.iter().map(|a| a.summary(now)).collect();
    if json {
        let mut text = String::new();
        for summary in &summaries {
            text.push_str(&serde_json::to_string(summary)?);
            text.push('\n');
        }
        return print(&text);
    }
    let rows: Vec<[String; 6]> = summaries
        .iter()
        .map(|s| {
            [
                s.username
                    .as_deref()
                    .map(|h| format!("@{h}"))
                    .unwrap_or_else(|| "-".into()),
                s.display_name.clone().unwrap_or_else(|| "-".into()),
                s.open_id.clone(),
                s.scopes.join(","),
                s.access_expires_at.clone(),
                if s.needs_login {
                    "expired: run `tiklive login`".into()
                } else {
                    s.refresh_expires_at.clone()
                },
            ]
        })
        .collect();
    let header = [
        "ACCOUNT",
        "NICKNAME",
        "OPEN_ID",
        "SCOPES",
        "ACCESS_EXPIRES",
        "REFRESH_EXPIRES",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(&header);
    for row in &rows {
        text.push_str(&line(&row.each_ref().map(String::as_str)));
    }
    print(&text)
}

/// One account, as `login` and `login --refresh` print it.
fn describe(summary: &AccountSummary, json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string(summary).unwrap_or_else(|_| "{}".into())
        );
    }
    let name = match (&summary.username, &summary.display_name) {
        (Some(handle), Some(nick)) => format!("@{handle} ({nick})"),
        (Some(handle), None) => format!("@{handle}"),
        (None, Some(nick)) => nick.clone(),
        (None, None) => "(no profile)".into(),
    };
    let mut text = format!(
        "account: {name}\nopen_id: {}\nscopes: {}\naccess token expires: {}\nrefresh token expires: {}\n",
        summary.open_id,
        summary.scopes.join(","),
        summary.access_expires_at,
        summary.refresh_expires_at
    );
    if let Some(c) = &summary.creator {
        let flag = |v: Option<bool>| match v {
            Some(true) => "disabled",
            Some(false) => "allowed",
            None => "unknown",
        };
        text.push_str(&format!(
            "privacy options: {}\ncomments: {}, duets: {}, stitches: {}\nmax video duration: {}\n",
            c.privacy_level_options.join(","),
            flag(c.comment_disabled),
            flag(c.duet_disabled),
            flag(c.stitch_disabled),
            c.max_video_post_duration_sec
                .map(|s| format!("{s}s"))
                .unwrap_or_else(|| "unknown".into())
        ));
    }
    text
}

/// Writes `text` to stdout; a closed stdout is a normal end.
fn print(text: &str) -> anyhow::Result<Exit> {
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if !is_closed_pipe(&e) => Err(e.into()),
        _ => Ok(Exit::Success),
    }
}

/// Shows the authorize URL on stderr, on a line of its own (always: it is the way forward when no
/// browser opens), and opens it in the browser when there is a display and `--no-browser` is not set.
fn announce(url: &str, no_browser: bool) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "Log in with TikTok by opening this page in a browser:");
    let _ = writeln!(err, "{url}");
    if no_browser {
        return;
    }
    if !has_display() {
        let _ = writeln!(err, "(no display found: open it yourself)");
        return;
    }
    match open_browser(url) {
        Ok(()) => {
            let _ = writeln!(err, "(opening it in your browser)");
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "(could not open a browser: {e}; open the page yourself)"
            );
        }
    }
}

fn has_display() -> bool {
    if cfg!(target_os = "macos") {
        return true;
    }
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    cfg!(unix) && (set("DISPLAY") || set("WAYLAND_DISPLAY"))
}

fn open_browser(url: &str) -> std::io::Result<()> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
}
