//! The `accounts` table (migration 3): the TikTok accounts logged in, their tokens, scopes, expiry
//! times and cached creator info. Plain synchronous functions on a connection; `flow` calls them on
//! tokio's blocking pool. The refresh lease lives here too: it is what keeps two processes from
//! spending one (rotating) refresh token twice.

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;

use super::client::{CreatorInfo, TokenSet, UserInfo};
use super::{OAuthConfig, OAuthError, Secret};
use crate::events::rfc3339_ms;

/// A logged-in account as stored. `Debug` redacts the tokens; [`Account::summary`] is what may be
/// shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub open_id: String,
    pub union_id: Option<String>,
    /// The @handle, without the `@` (from `user.info.profile`, else creator info).
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub scopes: Vec<String>,
    pub access_token: Secret,
    /// Unix milliseconds.
    pub access_expires_at: i64,
    pub refresh_token: Secret,
    pub refresh_expires_at: i64,
    /// When tokens were last obtained (login or refresh).
    pub refreshed_at: i64,
    pub creator: Option<CreatorInfo>,
    pub creator_info_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `login --status` shows about an account: everything but the tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    pub open_id: String,
    pub union_id: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub access_expires_at: String,
    pub refresh_expires_at: String,
    pub refreshed_at: String,
    /// True once the refresh token has expired: only a new login helps.
    pub needs_login: bool,
    pub creator: Option<CreatorInfo>,
    pub creator_info_at: Option<String>,
}

impl Account {
    /// A new login: tokens from the exchange, profile from user info and creator info (when fetched).
    pub fn from_login(
        tokens: &TokenSet,
        user: &UserInfo,
        creator: Option<CreatorInfo>,
        now: i64,
    ) -> Account {
        let pick = |a: &Option<String>, b: Option<&Option<String>>| {
            a.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| b.and_then(|b| b.clone()).filter(|s| !s.is_empty()))
        };
        let c = creator.as_ref();
        Account {
            open_id: tokens.open_id.clone(),
            union_id: user.union_id.clone().filter(|s| !s.is_empty()),
            username: pick(&user.username, c.map(|c| &c.creator_username)),
            display_name: pick(&user.display_name, c.map(|c| &c.creator_nickname)),
            avatar_url: pick(&user.avatar_url, c.map(|c| &c.creator_avatar_url)),
            scopes: tokens.scopes.clone(),
            access_token: tokens.access_token.clone(),
            access_expires_at: expiry(now, tokens.expires_in),
            refresh_token: tokens.refresh_token.clone(),
            refresh_expires_at: expiry(now, tokens.refresh_expires_in),
            refreshed_at: now,
            creator_info_at: creator.as_ref().map(|_| now),
            creator,
            created_at: now,
            updated_at: now,
        }
    }

    /// `@handle`, else the nickname, else the open id: how messages name the account.
    pub fn label(&self) -> String {
        match (&self.username, &self.display_name) {
            (Some(handle), _) => format!("@{handle}"),
            (None, Some(name)) => format!("{name:?}"),
            (None, None) => format!("open_id {}", self.open_id),
        }
    }

    pub fn summary(&self, now: i64) -> AccountSummary {
        AccountSummary {
            open_id: self.open_id.clone(),
            union_id: self.union_id.clone(),
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            avatar_url: self.avatar_url.clone(),
            scopes: self.scopes.clone(),
            access_expires_at: rfc3339_ms(self.access_expires_at),
            refresh_expires_at: rfc3339_ms(self.refresh_expires_at),
            refreshed_at: rfc3339_ms(self.refreshed_at),
            needs_login: self.refresh_expires_at <= now,
            creator: self.creator.clone(),
            creator_info_at: self.creator_info_at.map(rfc3339_ms),
        }
    }
}

/// `now + seconds`, in milliseconds, saturating.
fn expiry(now: i64, seconds: i64) -> i64 {
    now.saturating_add(seconds.saturating_mul(1000))
}

const COLUMNS: &str = "open_id, union_id, username, display_name, avatar_url, scopes, access_token,
    access_expires_at, refresh_token, refresh_expires_at, refreshed_at, creator_avatar_url,
    creator_username, creator_nickname, privacy_level_options, comment_disabled, duet_disabled,
    stitch_disabled, max_video_post_duration_sec, creator_info_at, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let creator_info_at: Option<i64> = r.get(19)?;
    let creator = match creator_info_at {
        None => None,
        Some(_) => {
            let options: Option<String> = r.get(14)?;
            Some(CreatorInfo {
                creator_avatar_url: r.get(11)?,
                creator_username: r.get(12)?,
                creator_nickname: r.get(13)?,
                privacy_level_options: options
                    .and_then(|o| serde_json::from_str(&o).ok())
                    .unwrap_or_default(),
                comment_disabled: r.get(15)?,
                duet_disabled: r.get(16)?,
                stitch_disabled: r.get(17)?,
                max_video_post_duration_sec: r.get(18)?,
            })
        }
    };
    let scopes: String = r.get(5)?;
    Ok(Account {
        open_id: r.get(0)?,
        union_id: r.get(1)?,
        username: r.get(2)?,
        display_name: r.get(3)?,
        avatar_url: r.get(4)?,
        scopes: OAuthConfig::parse_scopes(&scopes),
        access_token: Secret::new(r.get::<_, String>(6)?),
        access_expires_at: r.get(7)?,
        refresh_token: Secret::new(r.get::<_, String>(8)?),
        refresh_expires_at: r.get(9)?,
        refreshed_at: r.get(10)?,
        creator,
        creator_info_at,
        created_at: r.get(20)?,
        updated_at: r.get(21)?,
    })
}

/// Inserts the account, or replaces everything but `created_at` of the one with its open id (a new
/// login of the same account).
pub fn save(conn: &Connection, account: &Account) -> Result<(), OAuthError> {
    let c = account.creator.clone().unwrap_or_default();
    let has_creator = account.creator.is_some();
    let options = has_creator
        .then(|| serde_json::to_string(&c.privacy_level_options).unwrap_or_else(|_| "[]".into()));
    conn.execute(
        &format!(
            "INSERT INTO accounts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
                ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)
             ON CONFLICT (open_id) DO UPDATE SET
                union_id = excluded.union_id, username = excluded.username,
                display_name = excluded.display_name, avatar_url = excluded.avatar_url,
                scopes = excluded.scopes, access_token = excluded.access_token,
                access_expires_at = excluded.access_expires_at, refresh_token = excluded.refresh_token,
                refresh_expires_at = excluded.refresh_expires_at, refreshed_at = excluded.refreshed_at,
                refresh_lease_until = NULL,
                creator_avatar_url = excluded.creator_avatar_url,
                creator_username = excluded.creator_username,
                creator_nickname = excluded.creator_nickname,
                privacy_level_options = excluded.privacy_level_options,
                comment_disabled = excluded.comment_disabled, duet_disabled = excluded.duet_disabled,
                stitch_disabled = excluded.stitch_disabled,
                max_video_post_duration_sec = excluded.max_video_post_duration_sec,
                creator_info_at = excluded.creator_info_at, updated_at = excluded.updated_at"
        ),
        params![
            account.open_id,
            account.union_id,
            account.username,
            account.display_name,
            account.avatar_url,
            account.scopes.join(","),
            account.access_token.expose(),
            account.access_expires_at,
            account.refresh_token.expose(),
            account.refresh_expires_at,
            account.refreshed_at,
            has_creator.then_some(c.creator_avatar_url).flatten(),
            has_creator.then_some(c.creator_username).flatten(),
            has_creator.then_some(c.creator_nickname).flatten(),
            options,
            has_creator.then_some(c.comment_disabled).flatten(),
            has_creator.then_some(c.duet_disabled).flatten(),
            has_creator.then_some(c.stitch_disabled).flatten(),
            has_creator.then_some(c.max_video_post_duration_sec).flatten(),
            account.creator_info_at,
            account.created_at,
            account.updated_at,
        ],
    )?;
    Ok(())
}

/// Every account, by handle (then open id).
pub fn list(conn: &Connection) -> Result<Vec<Account>, OAuthError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM accounts ORDER BY username IS NULL, username, open_id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get(conn: &Connection, open_id: &str) -> Result<Option<Account>, OAuthError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM accounts WHERE open_id = ?1"),
            [open_id],
            from_row,
        )
        .optional()?)
}

/// The account `spec` names: `@handle`, a handle, or an open id. Without a spec, the only account.
pub fn find(conn: &Connection, spec: Option<&str>) -> Result<Account, OAuthError> {
    let all = list(conn)?;
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return match all.len() {
            0 => Err(OAuthError::NoAccount(
                "no TikTok account is logged in: run `tiklive login`".into(),
            )),
            1 => Ok(all.into_iter().next().expect("one account")),
            _ => Err(OAuthError::Config(format!(
                "several accounts are logged in ({}): name one (@handle or open id)",
                all.iter()
                    .map(Account::label)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    };
    let handle = spec.strip_prefix('@').unwrap_or(spec).to_lowercase();
    let by_handle =
        |a: &&Account| a.username.as_deref().map(str::to_lowercase) == Some(handle.clone());
    let found = if spec.starts_with('@') {
        all.iter().find(by_handle)
    } else {
        all.iter()
            .find(|a| a.open_id == spec)
            .or_else(|| all.iter().find(by_handle))
    };
    found.cloned().ok_or_else(|| {
        OAuthError::NoAccount(format!(
            "no logged-in account is {spec:?} (see `tiklive login --status`)"
        ))
    })
}

pub fn delete(conn: &Connection, open_id: &str) -> Result<bool, OAuthError> {
    Ok(conn.execute("DELETE FROM accounts WHERE open_id = ?1", [open_id])? > 0)
}

/// What [`claim_refresh`] found.
#[derive(Debug)]
pub enum RefreshClaim {
    /// No refresh is needed (any more): the account as it is now.
    Fresh(Account),
    /// Another process holds the lease; ask again shortly.
    Busy,
    /// The lease is ours until it expires: refresh, then [`store_refreshed`] or [`release_refresh`].
    Claimed(Account),
}

/// Decides, under the database write lock, whether this process refreshes `open_id` now. A refresh is
/// due when the access token expires within `before_ms`, or, with `refreshed_before` set (an explicit
/// refresh), when nobody refreshed it since that time.
pub fn claim_refresh(
    conn: &mut Connection,
    open_id: &str,
    now: i64,
    before_ms: i64,
    refreshed_before: Option<i64>,
    lease_ms: i64,
) -> Result<RefreshClaim, OAuthError> {
    // IMMEDIATE: the read and the lease are one step for every process sharing the file.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(account) = get(&tx, open_id)? else {
        return Err(OAuthError::NoAccount(format!(
            "the account {open_id} is no longer logged in"
        )));
    };
    let due = match refreshed_before {
        Some(since) => account.refreshed_at < since,
        None => account.access_expires_at - now <= before_ms,
    };
    if !due {
        return Ok(RefreshClaim::Fresh(account));
    }
    let lease: Option<i64> = tx.query_row(
        "SELECT refresh_lease_until FROM accounts WHERE open_id = ?1",
        [open_id],
        |r| r.get(0),
    )?;
    if lease.is_some_and(|until| until > now) {
        return Ok(RefreshClaim::Busy);
    }
    tx.execute(
        "UPDATE accounts SET refresh_lease_until = ?2 WHERE open_id = ?1",
        params![open_id, now.saturating_add(lease_ms)],
    )?;
    tx.commit()?;
    Ok(RefreshClaim::Claimed(account))
}

/// Stores the tokens of a refresh and gives the lease back. Called first thing after TikTok answers:
/// the refresh token sent is already dead.
pub fn store_refreshed(
    conn: &Connection,
    open_id: &str,
    tokens: &TokenSet,
    now: i64,
) -> Result<bool, OAuthError> {
    let scopes = (!tokens.scopes.is_empty()).then(|| tokens.scopes.join(","));
    let changed = conn.execute(
        "UPDATE accounts SET access_token = ?2, access_expires_at = ?3, refresh_token = ?4,
             refresh_expires_at = ?5, scopes = coalesce(?6, scopes), refreshed_at = ?7,
             refresh_lease_until = NULL, updated_at = ?7
         WHERE open_id = ?1",
        params![
            open_id,
            tokens.access_token.expose(),
            expiry(now, tokens.expires_in),
            tokens.refresh_token.expose(),
            expiry(now, tokens.refresh_expires_in),
            scopes,
            now,
        ],
    )?;
    Ok(changed > 0)
}

/// Gives the lease back after a refresh that did not happen.
pub fn release_refresh(conn: &Connection, open_id: &str) -> Result<(), OAuthError> {
    conn.execute(
        "UPDATE accounts SET refresh_lease_until = NULL WHERE open_id = ?1",
        [open_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn tokens(n: u32, expires_in: i64) -> TokenSet {
        TokenSet {
            open_id: "open-1".into(),
            scopes: vec!["user.info.basic".into(), "video.publish".into()],
            access_token: Secret::new(format!("act.{n}")),
            expires_in,
            refresh_token: Secret::new(format!("rft.{n}")),
            refresh_expires_in: 86_400,
        }
    }

    fn account(expires_in: i64) -> Account {
        let user = UserInfo {
            open_id: Some("open-1".into()),
            union_id: Some("union-1".into()),
            display_name: Some("Shop".into()),
            username: Some("shop".into()),
            avatar_url: None,
        };
        let creator = CreatorInfo {
            creator_avatar_url: Some("https://a/1.jpg".into()),
            privacy_level_options: vec!["SELF_ONLY".into()],
            comment_disabled: Some(false),
            max_video_post_duration_sec: Some(600),
            ..CreatorInfo::default()
        };
        Account::from_login(&tokens(1, expires_in), &user, Some(creator), 1_000_000)
    }

    #[test]
    fn an_account_round_trips_and_a_new_login_replaces_it() {
        let store = Store::open_in_memory().unwrap();
        let first = account(3600);
        assert_eq!(first.avatar_url.as_deref(), Some("https://a/1.jpg"));
        save(store.conn(), &first).unwrap();
        assert_eq!(get(store.conn(), "open-1").unwrap().unwrap(), first);
        let mut again = first.clone();
        again.access_token = Secret::new("act.2");
        again.creator = None;
        again.creator_info_at = None;
        again.created_at = 5;
        save(store.conn(), &again).unwrap();
        let stored = find(store.conn(), Some("@SHOP")).unwrap();
        assert_eq!(stored.access_token.expose(), "act.2");
        assert_eq!(stored.creator, None);
        assert_eq!(stored.created_at, first.created_at, "created_at is kept");
        assert_eq!(list(store.conn()).unwrap().len(), 1);
    }

    #[test]
    fn accounts_are_found_by_handle_or_open_id_and_one_needs_no_name() {
        let store = Store::open_in_memory().unwrap();
        assert!(matches!(
            find(store.conn(), None),
            Err(OAuthError::NoAccount(_))
        ));
        save(store.conn(), &account(3600)).unwrap();
        assert_eq!(find(store.conn(), None).unwrap().open_id, "open-1");
        assert_eq!(
            find(store.conn(), Some("open-1")).unwrap().open_id,
            "open-1"
        );
        assert_eq!(find(store.conn(), Some("shop")).unwrap().open_id, "open-1");
        assert!(matches!(
            find(store.conn(), Some("@other")),
            Err(OAuthError::NoAccount(_))
        ));
        let mut second = account(3600);
        second.open_id = "open-2".into();
        second.username = Some("other".into());
        save(store.conn(), &second).unwrap();
        assert!(matches!(
            find(store.conn(), None),
            Err(OAuthError::Config(_))
        ));
        assert!(delete(store.conn(), "open-2").unwrap());
        assert!(!delete(store.conn(), "open-2").unwrap());
    }

    #[test]
    fn one_refresh_at_a_time_and_only_when_due() {
        let mut store = Store::open_in_memory().unwrap();
        let acc = account(3600);
        save(store.conn(), &acc).unwrap();
        let now = acc.refreshed_at;
        // Expires in an hour; refreshing 5 minutes before is not due yet.
        let claim = claim_refresh(store.conn_mut(), "open-1", now, 300_000, None, 30_000).unwrap();
        assert!(matches!(claim, RefreshClaim::Fresh(_)));
        // Due when the window covers the expiry.
        let claim =
            claim_refresh(store.conn_mut(), "open-1", now, 3_600_000, None, 30_000).unwrap();
        assert!(matches!(claim, RefreshClaim::Claimed(_)));
        // A second claim during the lease waits.
        let claim =
            claim_refresh(store.conn_mut(), "open-1", now + 1, 3_600_000, None, 30_000).unwrap();
        assert!(matches!(claim, RefreshClaim::Busy));
        // The new pair is stored and the lease released.
        assert!(store_refreshed(store.conn(), "open-1", &tokens(2, 7200), now + 10).unwrap());
        let stored = get(store.conn(), "open-1").unwrap().unwrap();
        assert_eq!(stored.refresh_token.expose(), "rft.2");
        assert_eq!(stored.access_expires_at, now + 10 + 7_200_000);
        // An explicit refresh asked before that one is satisfied by it.
        let claim = claim_refresh(
            store.conn_mut(),
            "open-1",
            now + 20,
            0,
            Some(now + 5),
            30_000,
        )
        .unwrap();
        assert!(matches!(claim, RefreshClaim::Fresh(_)));
        // An expired lease (a process that died) can be taken over.
        let claim = claim_refresh(
            store.conn_mut(),
            "open-1",
            now + 20,
            0,
            Some(now + 15),
            30_000,
        )
        .unwrap();
        assert!(matches!(claim, RefreshClaim::Claimed(_)));
        let claim = claim_refresh(
            store.conn_mut(),
            "open-1",
            now + 40_000,
            0,
            Some(now + 15),
            30_000,
        )
        .unwrap();
        assert!(matches!(claim, RefreshClaim::Claimed(_)));
    }

    #[test]
    fn summaries_have_no_secret() {
        let acc = account(3600);
        let json = serde_json::to_string(&acc.summary(acc.refreshed_at)).unwrap();
        assert!(!json.contains("act.1") && !json.contains("rft.1"), "{json}");
        assert!(json.contains("\"username\":\"shop\""), "{json}");
        let debug = format!("{acc:?}");
        assert!(
            !debug.contains("act.1") && !debug.contains("rft.1"),
            "{debug}"
        );
    }
}
