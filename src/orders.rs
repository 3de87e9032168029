//! Sales: what a seller sold to whom, made from a chat claim (or any stored message that has a user) or
//! by hand, priced in integer minor units of a currency. The rules live here rather than in the command,
//! so that every way of creating a sale obeys them: one sale per message unless forced, checked inside
//! a write transaction so that two processes (a `watch --auto-sale` and a seller at the terminal)
//! cannot both create one.

use std::fmt;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use serde::{Serialize, Serializer};

use crate::events::rfc3339_ms;
use crate::money::{Price, format_minor};
use crate::store::{Store, StoreError, spans};

/// Where a sale stands. A cancelled sale is kept, and no longer counts as its message's sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SaleStatus {
    Pending,
    Confirmed,
    Paid,
    Cancelled,
}

impl SaleStatus {
    /// The value of `sales.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleStatus::Pending => "pending",
            SaleStatus::Confirmed => "confirmed",
            SaleStatus::Paid => "paid",
            SaleStatus::Cancelled => "cancelled",
        }
    }

    pub(crate) fn from_sql(text: &str) -> Option<SaleStatus> {
        [
            SaleStatus::Pending,
            SaleStatus::Confirmed,
            SaleStatus::Paid,
            SaleStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for SaleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `sales`, with its buyer's latest handle and nickname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub id: i64,
    /// The row of `lives` the sale belongs to.
    pub live_id: i64,
    pub room_id: u64,
    /// The message the sale was made from; `None` for a manual sale.
    pub msg_id: Option<u64>,
    /// The claim (a row of `claims`) the sale was made from, when its message was one.
    pub claim_id: Option<i64>,
    /// TikTok's user id of the buyer.
    pub buyer_id: u64,
    pub unique_id: Option<String>,
    pub nickname: Option<String>,
    pub item: Option<String>,
    pub variant: Option<String>,
    pub quantity: u32,
    /// The unit price; `None` until it is known.
    pub price: Option<Price>,
    pub status: SaleStatus,
    pub note: Option<String>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds; strictly later after every change.
    pub updated_ms: i64,
}

impl Sale {
    /// Unit price × quantity, in the price's currency; `None` without a price (or, for a row written
    /// by something else than this module, when it would overflow).
    pub fn total(&self) -> Option<Price> {
        let price = self.price.as_ref()?;
        Some(Price {
            minor: price.minor.checked_mul(i64::from(self.quantity))?,
            currency: price.currency.clone(),
        })
    }
}

/// The JSON of a sale, stable for scripts: TikTok's 64-bit ids as strings, amounts as exact decimal
/// strings ("12.50") in `currency`, times as RFC 3339 UTC with milliseconds. The names are the columns
/// of `tiklive export sales`, plus `claim_id`.
impl Serialize for Sale {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct SaleJson<'a> {
            id: i64,
            live_id: i64,
            room_id: String,
            msg_id: Option<String>,
            claim_id: Option<i64>,
            buyer_id: String,
            unique_id: Option<&'a str>,
            nickname: Option<&'a str>,
            item: Option<&'a str>,
            variant: Option<&'a str>,
            quantity: u32,
            unit_price: Option<String>,
            currency: Option<&'a str>,
            total: Option<String>,
            status: SaleStatus,
            note: Option<&'a str>,
            created: String,
            updated: String,
        }
        let amount = |p: &Price| format_minor(p.minor, &p.currency, '.');
        SaleJson {
            id: self.id,
            live_id: self.live_id,
            room_id: self.room_id.to_string(),
            msg_id: self.msg_id.map(|m| m.to_string()),
            claim_id: self.claim_id,
            buyer_id: self.buyer_id.to_string(),
            unique_id: self.unique_id.as_deref(),
            nickname: self.nickname.as_deref(),
            item: self.item.as_deref(),
            variant: self.variant.as_deref(),
            quantity: self.quantity,
            unit_price: self.price.as_ref().map(amount),
            currency: self.price.as_ref().map(|p| p.currency.as_str()),
            total: self.total().as_ref().map(amount),
            status: self.status,
            note: self.note.as_deref(),
            created: rfc3339_ms(self.created_ms),
            updated: rfc3339_ms(self.updated_ms),
        }
        .serialize(serializer)
    }
}

/// What the seller says about a new sale. For a sale made from a claim, each field left `None` is
/// taken from the claim; an empty or blank text counts as `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSale {
    pub item: Option<String>,
    pub variant: Option<String>,
    /// Default: the claim's quantity, else 1.
    pub quantity: Option<u32>,
    pub price: Option<Price>,
    pub note: Option<String>,
}

/// A sale made from a message, and what the caller should tell the seller about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub sale: Sale,
    /// The message was a claim. When it was not (a chat line that did not parse as a claim, a gift…),
    /// the sale was still made, with only what the seller gave.
    pub from_claim: bool,
    /// The message's event type (`chat`, `gift`…).
    pub message_type: String,
    /// The sales, not cancelled, that the message already had: only ever non-empty when forced.
    pub existing: Vec<i64>,
}

/// Changes to a sale; `None` leaves a field as it is. An empty or blank `item`, `variant` or `note`
/// removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaleChanges {
    pub status: Option<SaleStatus>,
    pub item: Option<String>,
    pub variant: Option<String>,
    pub quantity: Option<u32>,
    pub price: Option<Price>,
    pub note: Option<String>,
}

impl SaleChanges {
    pub fn is_empty(&self) -> bool {
        *self == SaleChanges::default()
    }
}

/// Which sales [`list`] returns; every field left `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaleFilter {
    /// A row of `lives`.
    pub live: Option<i64>,
    /// `@handle`, `handle` or TikTok's numeric user id, as [`Store::find_buyer`] takes it.
    pub buyer: Option<String>,
    pub status: Option<SaleStatus>,
    /// Created at or after this Unix millisecond.
    pub since_ms: Option<i64>,
}

/// Why a sale could not be made, found or changed. [`SaleError::kind`] sorts them for exit codes.
#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error(
        "no message {0} in the database: check the msg_id (as printed by `tiklive watch`) and that \
         its live was stored"
    )]
    MessageNotFound(u64),
    #[error(
        "message {msg_id} is a {kind} event without a user, so nobody bought anything with it: \
         pick a chat message (a claim), or make a manual sale with --buyer"
    )]
    MessageWithoutUser { msg_id: u64, kind: String },
    #[error(
        "message {msg_id} already has sale {sale_id} ({status}): change that sale with \
         `tiklive sale update {sale_id}`, cancel it first, or pass --force to create another"
    )]
    AlreadySold {
        msg_id: u64,
        sale_id: i64,
        status: SaleStatus,
    },
    #[error(
        "sale {id} cannot leave `cancelled`: its message {msg_id} now has sale {other} ({status}); \
         cancel sale {other} first"
    )]
    SoldAgain {
        id: i64,
        msg_id: u64,
        other: i64,
        status: SaleStatus,
    },
    #[error(
        "no buyer {0:?} in the database: buyers are the viewers seen in stored lives \
         (`tiklive export buyers` lists them)"
    )]
    BuyerNotFound(String),
    #[error("buyer {0:?} was seen in no stored live: name the live with --live LIVE_ID")]
    BuyerNeverSeen(String),
    #[error(
        "no live {0} in the database: the live_id column of `tiklive sale list` or \
         `tiklive export events` shows the ids"
    )]
    LiveNotFound(i64),
    #[error("no sale {0}: `tiklive sale list` shows the sale ids")]
    SaleNotFound(i64),
    #[error("a manual sale needs an item: pass --item CODE")]
    MissingItem,
    #[error(
        "nothing to change in sale {0}: pass --status, --price (a new currency goes with it: --price '12.50 GBP'), --qty, --item, --variant or --note"
    )]
    NothingToChange(i64),
    #[error("the total of {quantity} × {price} {currency} is too large")]
    TooLarge {
        price: String,
        currency: String,
        quantity: u32,
    },
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The kinds of [`SaleError`] a caller turns into exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleErrorKind {
    /// The request cannot be right whatever the database holds (a message without a user, nothing to
    /// change, a total too large).
    Usage,
    /// Something named does not exist, or the message already has a sale.
    NotFound,
    /// The database failed.
    Database,
}

impl SaleError {
    pub fn kind(&self) -> SaleErrorKind {
        match self {
            SaleError::MessageWithoutUser { .. }
            | SaleError::MissingItem
            | SaleError::NothingToChange(_)
            | SaleError::TooLarge { .. } => SaleErrorKind::Usage,
            SaleError::MessageNotFound(_)
            | SaleError::AlreadySold { .. }
            | SaleError::SoldAgain { .. }
            | SaleError::BuyerNotFound(_)
            | SaleError::BuyerNeverSeen(_)
            | SaleError::LiveNotFound(_)
            | SaleError::SaleNotFound(_) => SaleErrorKind::NotFound,
            SaleError::Database(_) | SaleError::Store(_) => SaleErrorKind::Database,
        }
    }
}

/// Creates a pending sale from the stored message `msg_id`: its buyer is the message's user, and, when
/// the message is a claim, item, variant and quantity default to the claim's. Refused when the message
/// already has a sale that is not cancelled, unless `force`.
pub fn create_from_message(
    store: &mut Store,
    msg_id: u64,
    sale: &NewSale,
    force: bool,
    now_ms: i64,
) -> Result<Created, SaleError> {
    // IMMEDIATE takes the write lock before the check, so no other process can add a sale for the
    // message between the check and the insert.
    let tx = store
        .conn_mut()
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let message = find_message(&tx, msg_id)?.ok_or(SaleError::MessageNotFound(msg_id))?;
    let buyer = message
        .user_id
        .ok_or_else(|| SaleError::MessageWithoutUser {
            msg_id,
            kind: message.kind.clone(),
        })?;
    let claim = tx
        .query_row(
            "SELECT id, item, variant, quantity FROM claims WHERE event_id = ?1",
            [message.event_id],
            |r| {
                Ok(ClaimRow {
                    id: r.get(0)?,
                    item: r.get(1)?,
                    variant: r.get(2)?,
                    quantity: r.get(3)?,
                })
            },
        )
        .optional()?;
    let existing = live_sales_of_message(&tx, message.room_id, msg_id, None)?;
    if let (Some(&(sale_id, status)), false) = (existing.first(), force) {
        return Err(SaleError::AlreadySold {
            msg_id,
            sale_id,
            status,
        });
    }
    let claim_quantity = claim
        .as_ref()
        .and_then(|c| u32::try_from(c.quantity.max(1)).ok());
    let row = SaleRow {
        live_id: message.live_id,
        room_id: message.room_id,
        buyer_id: buyer,
        claim_id: claim.as_ref().map(|c| c.id),
        msg_id: Some(msg_id as i64),
        item: text(&sale.item).or_else(|| claim.as_ref().and_then(|c| c.item.clone())),
        variant: text(&sale.variant).or_else(|| claim.as_ref().and_then(|c| c.variant.clone())),
        quantity: sale.quantity.or(claim_quantity).unwrap_or(1),
        price: sale.price.clone(),
        note: text(&sale.note),
    };
    let id = insert(&tx, &row, now_ms)?;
    let created = load(&tx, id)?.ok_or(SaleError::SaleNotFound(id))?;
    tx.commit()?;
    Ok(Created {
        sale: created,
        from_claim: claim.is_some(),
        message_type: message.kind,
        existing: existing.into_iter().map(|(id, _)| id).collect(),
    })
}

/// Creates a pending sale by hand for `buyer` (`@handle`, `handle` or numeric user id), in `live` or
/// else in the live where the buyer was seen most recently. It needs an item.
pub fn create_manual(
    store: &mut Store,
    buyer: &str,
    live: Option<i64>,
    sale: &NewSale,
    now_ms: i64,
) -> Result<Sale, SaleError> {
    let item = text(&sale.item).ok_or(SaleError::MissingItem)?;
    let buyer_id = find_buyer(store, buyer)?;
    let conn = store.conn();
    let (live_id, room_id) = match live {
        Some(live) => (live, live_room(conn, live)?),
        None => latest_live_of(conn, buyer_id)?
            .ok_or_else(|| SaleError::BuyerNeverSeen(buyer.to_owned()))?,
    };
    let row = SaleRow {
        live_id,
        room_id,
        buyer_id,
        claim_id: None,
        msg_id: None,
        item: Some(item),
        variant: text(&sale.variant),
        quantity: sale.quantity.unwrap_or(1),
        price: sale.price.clone(),
        note: text(&sale.note),
    };
    let id = insert(conn, &row, now_ms)?;
    load(conn, id)?.ok_or(SaleError::SaleNotFound(id))
}

/// The sales that match `filter`, oldest first (by creation, then id). A buyer or live that does not
/// exist is an error rather than an empty list, since it is most likely a typo.
pub fn list(store: &Store, filter: &SaleFilter) -> Result<Vec<Sale>, SaleError> {
    let mut sql = format!("{SELECT_SALE} WHERE 1");
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(live) = filter.live {
        live_room(store.conn(), live)?;
        sql.push_str(" AND s.live_id = ?");
        values.push(live.into());
    }
    if let Some(buyer) = &filter.buyer {
        sql.push_str(" AND s.buyer_id = ?");
        values.push(find_buyer(store, buyer)?.into());
    }
    if let Some(status) = filter.status {
        sql.push_str(" AND s.status = ?");
        values.push(status.as_str().to_owned().into());
    }
    if let Some(since) = filter.since_ms {
        sql.push_str(" AND s.created_at >= ?");
        values.push(since.into());
    }
    sql.push_str(" ORDER BY s.created_at, s.id");
    let mut stmt = store.conn().prepare(&sql)?;
    let sales = stmt
        .query_map(params_from_iter(values), sale_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sales)
}

/// Sales created or changed at or after `since_ms` (their `updated` time), oldest change first: what
/// a feed announces when it polls for changes made by any process.
pub fn changed_since(store: &Store, since_ms: i64) -> Result<Vec<Sale>, SaleError> {
    let sql = format!("{SELECT_SALE} WHERE s.updated_at >= ?1 ORDER BY s.updated_at, s.id");
    let mut stmt = store.conn().prepare_cached(&sql)?;
    let sales = stmt
        .query_map([since_ms], sale_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sales)
}

/// One sale by id.
pub fn get(store: &Store, id: i64) -> Result<Sale, SaleError> {
    load(store.conn(), id)?.ok_or(SaleError::SaleNotFound(id))
}

/// Applies `changes` to sale `id` and returns it as it now is. A change to what the sale already is
/// writes nothing (so `updated` tells when the sale last really changed); a real change sets `updated`
/// to now, or just after its previous value if the clock says otherwise. A cancelled sale made from a
/// message cannot be given another status while the message has another sale that is not cancelled.
pub fn update(
    store: &mut Store,
    id: i64,
    changes: &SaleChanges,
    now_ms: i64,
) -> Result<Sale, SaleError> {
    if changes.is_empty() {
        return Err(SaleError::NothingToChange(id));
    }
    let tx = store
        .conn_mut()
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = load(&tx, id)?.ok_or(SaleError::SaleNotFound(id))?;
    let mut next = current.clone();
    if let Some(status) = changes.status {
        next.status = status;
    }
    if changes.item.is_some() {
        next.item = text(&changes.item);
    }
    if changes.variant.is_some() {
        next.variant = text(&changes.variant);
    }
    if let Some(quantity) = changes.quantity {
        next.quantity = quantity;
    }
    if changes.price.is_some() {
        next.price = changes.price.clone();
    }
    if changes.note.is_some() {
        next.note = text(&changes.note);
    }
    if next == current {
        return Ok(current);
    }
    check_total(next.price.as_ref(), next.quantity)?;
    if let (SaleStatus::Cancelled, Some(msg_id)) = (current.status, current.msg_id)
        && next.status != SaleStatus::Cancelled
        && let Some(&(other, status)) =
            live_sales_of_message(&tx, current.room_id as i64, msg_id, Some(id))?.first()
    {
        return Err(SaleError::SoldAgain {
            id,
            msg_id,
            other,
            status,
        });
    }
    let updated = now_ms.max(current.updated_ms.saturating_add(1));
    tx.execute(
        "UPDATE sales SET status = ?2, item = ?3, variant = ?4, quantity = ?5, unit_price_cents = ?6,
                currency = ?7, note = ?8, updated_at = ?9
         WHERE id = ?1",
        params![
            id,
            next.status.as_str(),
            next.item,
            next.variant,
            next.quantity,
            next.price.as_ref().map(|p| p.minor),
            next.price.as_ref().map(|p| &p.currency),
            next.note,
            updated,
        ],
    )?;
    let sale = load(&tx, id)?.ok_or(SaleError::SaleNotFound(id))?;
    tx.commit()?;
    Ok(sale)
}

/// Cancels sale `id` (kept, with status `cancelled`; its message may then be sold again). Cancelling a
/// cancelled sale changes nothing and is not an error.
pub fn cancel(store: &mut Store, id: i64, now_ms: i64) -> Result<Sale, SaleError> {
    let changes = SaleChanges {
        status: Some(SaleStatus::Cancelled),
        ..SaleChanges::default()
    };
    update(store, id, &changes, now_ms)
}

const SELECT_SALE: &str = "SELECT s.id, s.live_id, s.room_id, s.msg_id, s.claim_id, s.buyer_id, \
     b.unique_id, b.nickname, s.item, s.variant, s.quantity, s.unit_price_cents, s.currency, s.status, \
     s.note, s.created_at, s.updated_at \
     FROM sales s LEFT JOIN buyers b ON b.id = s.buyer_id";

fn sale_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Sale> {
    let status: String = r.get(13)?;
    let status = SaleStatus::from_sql(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            13,
            rusqlite::types::Type::Text,
            format!("unknown sale status {status:?}").into(),
        )
    })?;
    let minor: Option<i64> = r.get(11)?;
    let currency: Option<String> = r.get(12)?;
    // TikTok ids are stored as signed INTEGER; the cast gives every bit back (see `store::sql_id`).
    let id = |i| r.get::<_, i64>(i).map(|v| v as u64);
    Ok(Sale {
        id: r.get(0)?,
        live_id: r.get(1)?,
        room_id: id(2)?,
        msg_id: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
        claim_id: r.get(4)?,
        buyer_id: id(5)?,
        unique_id: r.get(6)?,
        nickname: r.get(7)?,
        item: r.get(8)?,
        variant: r.get(9)?,
        quantity: r.get(10)?,
        price: minor
            .zip(currency)
            .map(|(minor, currency)| Price { minor, currency }),
        status,
        note: r.get(14)?,
        created_ms: r.get(15)?,
        updated_ms: r.get(16)?,
    })
}

fn load(conn: &Connection, id: i64) -> Result<Option<Sale>, SaleError> {
    let sql = format!("{SELECT_SALE} WHERE s.id = ?1");
    Ok(conn.query_row(&sql, [id], sale_from_row).optional()?)
}

/// What a new row of `sales` holds besides its status (pending) and times.
struct SaleRow {
    live_id: i64,
    room_id: i64,
    buyer_id: i64,
    claim_id: Option<i64>,
    msg_id: Option<i64>,
    item: Option<String>,
    variant: Option<String>,
    quantity: u32,
    price: Option<Price>,
    note: Option<String>,
}

fn insert(conn: &Connection, row: &SaleRow, now_ms: i64) -> Result<i64, SaleError> {
    check_total(row.price.as_ref(), row.quantity)?;
    conn.execute(
        "INSERT INTO sales (live_id, room_id, buyer_id, claim_id, msg_id, item, variant, quantity,
                            unit_price_cents, currency, status, note, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12, ?12)",
        params![
            row.live_id,
            row.room_id,
            row.buyer_id,
            row.claim_id,
            row.msg_id,
            row.item,
            row.variant,
            row.quantity,
            row.price.as_ref().map(|p| p.minor),
            row.price.as_ref().map(|p| &p.currency),
            row.note,
            now_ms,
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Every stored total fits in 64 bits, so no reader of the database has to deal with an overflow.
fn check_total(price: Option<&Price>, quantity: u32) -> Result<(), SaleError> {
    match price {
        Some(p) if p.minor.checked_mul(i64::from(quantity)).is_none() => Err(SaleError::TooLarge {
            price: format_minor(p.minor, &p.currency, '.'),
            currency: p.currency.clone(),
            quantity,
        }),
        _ => Ok(()),
    }
}

/// The trimmed text, or `None` when there is none.
fn text(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The sales of a message that are not cancelled (but `except`), oldest first.
fn live_sales_of_message(
    conn: &Connection,
    room_id: i64,
    msg_id: u64,
    except: Option<i64>,
) -> Result<Vec<(i64, SaleStatus)>, SaleError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, status FROM sales
         WHERE room_id = ?1 AND msg_id = ?2 AND status <> 'cancelled' AND id IS NOT ?3
         ORDER BY id",
    )?;
    let rows = stmt.query_map(params![room_id, msg_id as i64, except], |r| {
        let status: String = r.get(1)?;
        // The CHECK constraint allows nothing else; a stranger value still blocks a new sale.
        Ok((
            r.get(0)?,
            SaleStatus::from_sql(&status).unwrap_or(SaleStatus::Pending),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

struct Message {
    event_id: i64,
    live_id: i64,
    room_id: i64,
    kind: String,
    user_id: Option<i64>,
}

struct ClaimRow {
    id: i64,
    item: Option<String>,
    variant: Option<String>,
    quantity: i64,
}

/// The stored event with this message id, found through the events' unique key (msg_id, room_id).
/// Should the id exist in several rooms, the latest stored wins.
fn find_message(conn: &Connection, msg_id: u64) -> Result<Option<Message>, SaleError> {
    Ok(conn
        .query_row(MESSAGE, [msg_id as i64], |r| {
            Ok(Message {
                event_id: r.get(0)?,
                live_id: r.get(1)?,
                room_id: r.get(2)?,
                kind: r.get(3)?,
                user_id: r.get(4)?,
            })
        })
        .optional()?)
}

const MESSAGE: &str = "SELECT id, live_id, room_id, type, user_id FROM events \
     WHERE msg_id = ?1 ORDER BY id DESC LIMIT 1";

fn find_buyer(store: &Store, spec: &str) -> Result<i64, SaleError> {
    store
        .find_buyer(spec)?
        .ok_or_else(|| SaleError::BuyerNotFound(spec.trim().to_owned()))
}

/// The room of a stored live.
fn live_room(conn: &Connection, live: i64) -> Result<i64, SaleError> {
    conn.query_row("SELECT room_id FROM lives WHERE id = ?1", [live], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or(SaleError::LiveNotFound(live))
}

/// The live (and room) of the buyer's latest event. `events` has no index on the user or the time; but
/// the buyer's latest event is at or after `buyers.last_seen` (always the time of one of their events),
/// so only the spans of ids that may hold such times are read (`store::spans`), newest first.
fn latest_live_of(conn: &Connection, buyer_id: i64) -> Result<Option<(i64, i64)>, SaleError> {
    let last_seen: i64 = conn.query_row(
        "SELECT last_seen FROM buyers WHERE id = ?1",
        [buyer_id],
        |r| r.get(0),
    )?;
    let spans = spans::id_spans(conn)?;
    let mut stmt = conn.prepare_cached(LATEST_EVENTS_OF_USER_SINCE)?;
    let mut latest_since = |since: i64| {
        let read = |first: i64, last: i64, limit: usize| {
            stmt.query_map(params![first, last, buyer_id, since, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })?
            .collect()
        };
        let found = spans::newest(&spans, (since, i64::MAX), 1, read, |&(ts, id, _, _)| {
            (ts, id)
        })?;
        Ok::<_, rusqlite::Error>(found.first().map(|&(_, _, live, room)| (live, room)))
    };
    if let Some(recent) = latest_since(last_seen)? {
        return Ok(Some(recent));
    }
    // Only if `last_seen` was ever written otherwise.
    Ok(latest_since(i64::MIN)?)
}

/// A user's latest events among ids `?1..=?2` at or after time `?4`: (time, id, live, room).
const LATEST_EVENTS_OF_USER_SINCE: &str = "SELECT ts, id, live_id, room_id FROM events \
     WHERE id BETWEEN ?1 AND ?2 AND user_id = ?3 AND ts >= ?4 ORDER BY ts DESC, id DESC LIMIT ?5";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claim;
    use crate::events::{Event, EventData, EventUser};
    use crate::money::parse_price;
    use crate::store::{LiveSource, NewLive, StoreWriter, WriterConfig};

    const ROOM: u64 = 7_270_193_599_273_683_745;
    const ROOM_2: u64 = 7_270_193_599_273_689_999;
    /// Message ids above 2^63, to show they keep every bit.
    const CLAIM: u64 = 9_300_000_000_000_000_101;
    const HELLO: u64 = 9_300_000_000_000_000_102;
    const VIEWERS: u64 = 9_300_000_000_000_000_103;
    const BOB_CLAIM: u64 = 9_300_000_000_000_000_104;
    const LIKE: u64 = 9_300_000_000_000_000_105;
    const LATER_CLAIM: u64 = 9_300_000_000_000_000_201;
    const ANNA: u64 = 6_800_000_000_000_000_042;
    const BOB: u64 = 43;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        store: Store,
        first_live: i64,
        second_live: i64,
    }

    fn user(id: u64, handle: &str) -> EventUser {
        EventUser {
            id,
            unique_id: handle.to_owned(),
            nickname: format!("{handle} ✨"),
            avatar_url: None,
            follow_role: 0,
            is_moderator: false,
            is_subscriber: false,
            gifter_level: 0,
        }
    }

    fn event(
        room_id: u64,
        msg_id: u64,
        ts_ms: i64,
        user: Option<EventUser>,
        data: EventData,
    ) -> Event {
        Event {
            room_id,
            msg_id,
            ts_ms,
            user,
            data,
            raw: None,
        }
    }

    fn chat(room_id: u64, msg_id: u64, ts_ms: i64, who: EventUser, claim: Option<Claim>) -> Event {
        let comment = claim.as_ref().map_or("hello".to_owned(), |c| c.raw.clone());
        let data = EventData::Chat {
            comment,
            emotes: Vec::new(),
            claim,
        };
        event(room_id, msg_id, ts_ms, Some(who), data)
    }

    fn claim(item: Option<&str>, variant: Option<&str>, quantity: u32) -> Claim {
        Claim {
            item: item.map(str::to_owned),
            variant: variant.map(str::to_owned),
            quantity,
            raw: format!(
                "jp {} {} x{quantity}",
                item.unwrap_or(""),
                variant.unwrap_or("")
            ),
        }
    }

    fn new_live(room_id: u64, started_ms: i64) -> NewLive {
        NewLive {
            host: "shop".into(),
            room_id,
            title: None,
            source: LiveSource::Watch,
            started_ms,
        }
    }

    /// Two lives: in the first, anna claims A12 M ×2, says hello and likes; bob claims "7"; a viewer
    /// count has no user. In the second, later one, anna claims again.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = StoreWriter::spawn(&path, WriterConfig::default()).unwrap();
        let first = writer.begin_live(new_live(ROOM, 500)).unwrap();
        let anna = || user(ANNA, "anna");
        let viewers = EventData::RoomUser {
            viewer_count: 120,
            total_viewers: 300,
            top_viewers: Vec::new(),
        };
        let like = EventData::Like {
            like_count: 5,
            total_like_count: 50,
        };
        for e in [
            chat(
                ROOM,
                CLAIM,
                1_000,
                anna(),
                Some(claim(Some("A12"), Some("M"), 2)),
            ),
            chat(ROOM, HELLO, 1_100, anna(), None),
            event(ROOM, VIEWERS, 1_200, None, viewers),
            chat(
                ROOM,
                BOB_CLAIM,
                1_300,
                user(BOB, "bob"),
                Some(claim(Some("7"), None, 1)),
            ),
            event(ROOM, LIKE, 1_400, Some(anna()), like),
        ] {
            writer.send(first, &e).unwrap();
        }
        let second = writer.begin_live(new_live(ROOM_2, 4_000)).unwrap();
        let later = chat(
            ROOM_2,
            LATER_CLAIM,
            5_000,
            anna(),
            Some(claim(Some("B3"), None, 1)),
        );
        writer.send(second, &later).unwrap();
        writer.finish().unwrap();
        Fixture {
            store: Store::open(&path).unwrap(),
            path,
            _dir: dir,
            first_live: first.get(),
            second_live: second.get(),
        }
    }

    fn eur(text: &str) -> Option<Price> {
        Some(parse_price(text, "EUR").unwrap())
    }

    fn from_message(
        f: &mut Fixture,
        msg_id: u64,
        sale: NewSale,
        now: i64,
    ) -> Result<Created, SaleError> {
        create_from_message(&mut f.store, msg_id, &sale, false, now)
    }

    #[test]
    fn a_sale_from_a_claim_takes_its_item_variant_quantity_and_buyer() {
        let mut f = fixture();
        let sale = NewSale {
            price: eur("12.50"),
            ..NewSale::default()
        };
        let created = from_message(&mut f, CLAIM, sale, 10_000).unwrap();
        assert!(created.from_claim);
        assert_eq!(created.message_type, "chat");
        assert!(created.existing.is_empty());
        let s = &created.sale;
        assert_eq!(
            (s.live_id, s.room_id, s.msg_id, s.buyer_id),
            (f.first_live, ROOM, Some(CLAIM), ANNA)
        );
        assert!(s.claim_id.is_some());
        assert_eq!(
            (s.item.as_deref(), s.variant.as_deref(), s.quantity),
            (Some("A12"), Some("M"), 2)
        );
        assert_eq!(
            (s.unique_id.as_deref(), s.status),
            (Some("anna"), SaleStatus::Pending)
        );
        assert_eq!((s.created_ms, s.updated_ms), (10_000, 10_000));
        assert_eq!(s.total(), eur("25.00"));
        assert_eq!(
            get(&f.store, s.id).unwrap(),
            *s,
            "what was returned is what is stored"
        );
    }

    #[test]
    fn flags_override_the_claim_and_the_json_is_stable() {
        let mut f = fixture();
        let sale = NewSale {
            item: Some(" B7 ".into()),
            variant: Some("L".into()),
            quantity: Some(3),
            price: Some(parse_price("9.99 USD", "EUR").unwrap()),
            note: Some("gift wrap".into()),
        };
        let s = from_message(&mut f, CLAIM, sale, 1_692_724_604_212)
            .unwrap()
            .sale;
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": s.id,
                "live_id": f.first_live,
                "room_id": ROOM.to_string(),
                "msg_id": "9300000000000000101",
                "claim_id": s.claim_id.unwrap(),
                "buyer_id": "6800000000000000042",
                "unique_id": "anna",
                "nickname": "anna ✨",
                "item": "B7",
                "variant": "L",
                "quantity": 3,
                "unit_price": "9.99",
                "currency": "USD",
                "total": "29.97",
                "status": "pending",
                "note": "gift wrap",
                "created": "2023-08-22T17:16:44.212Z",
                "updated": "2023-08-22T17:16:44.212Z",
            })
        );
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 18);
    }

    #[test]
    fn a_claim_without_item_or_variant_leaves_them_unset_and_quantity_1() {
        let mut f = fixture();
        let s = from_message(&mut f, BOB_CLAIM, NewSale::default(), 1)
            .unwrap()
            .sale;
        assert_eq!(
            (s.item.as_deref(), s.variant.as_deref(), s.quantity),
            (Some("7"), None, 1)
        );
        assert_eq!((s.buyer_id, s.unique_id.as_deref()), (BOB, Some("bob")));
        let json = serde_json::to_value(&s).unwrap();
        for field in ["unit_price", "currency", "total", "note", "variant"] {
            assert!(json[field].is_null(), "{field}: {json}");
        }
    }

    #[test]
    fn a_message_that_is_not_a_claim_makes_a_sale_and_says_so() {
        let mut f = fixture();
        let sale = NewSale {
            item: Some("A1".into()),
            ..NewSale::default()
        };
        let hello = from_message(&mut f, HELLO, sale, 1).unwrap();
        assert!(!hello.from_claim);
        assert_eq!(hello.message_type, "chat");
        let s = &hello.sale;
        assert_eq!(
            (s.claim_id, s.msg_id, s.buyer_id),
            (None, Some(HELLO), ANNA)
        );
        assert_eq!(
            (s.item.as_deref(), s.variant.as_deref(), s.quantity),
            (Some("A1"), None, 1)
        );

        let like = from_message(&mut f, LIKE, NewSale::default(), 2).unwrap();
        assert!(!like.from_claim);
        assert_eq!(like.message_type, "like");
        assert_eq!(like.sale.item, None);
    }

    #[test]
    fn unknown_messages_and_messages_without_a_user_are_refused() {
        let mut f = fixture();
        let err = from_message(&mut f, VIEWERS, NewSale::default(), 1).unwrap_err();
        assert!(matches!(&err, SaleError::MessageWithoutUser { kind, .. } if kind == "room_user"));
        assert_eq!(err.kind(), SaleErrorKind::Usage);
        let err = from_message(&mut f, 12345, NewSale::default(), 1).unwrap_err();
        assert!(matches!(err, SaleError::MessageNotFound(12345)), "{err:?}");
        assert_eq!(err.kind(), SaleErrorKind::NotFound);
        assert!(err.to_string().contains("12345"), "{err}");
        assert!(list(&f.store, &SaleFilter::default()).unwrap().is_empty());
    }

    #[test]
    fn a_second_sale_for_a_message_needs_force_until_the_first_is_cancelled() {
        let mut f = fixture();
        let first = from_message(&mut f, CLAIM, NewSale::default(), 1)
            .unwrap()
            .sale;
        let err = from_message(&mut f, CLAIM, NewSale::default(), 2).unwrap_err();
        match &err {
            SaleError::AlreadySold {
                msg_id,
                sale_id,
                status,
            } => assert_eq!(
                (*msg_id, *sale_id, *status),
                (CLAIM, first.id, SaleStatus::Pending)
            ),
            other => panic!("expected AlreadySold, got {other:?}"),
        }
        assert_eq!(err.kind(), SaleErrorKind::NotFound);
        assert!(
            err.to_string().contains(&format!("sale {}", first.id)),
            "{err}"
        );
        assert!(err.to_string().contains("--force"), "{err}");

        let forced =
            create_from_message(&mut f.store, CLAIM, &NewSale::default(), true, 3).unwrap();
        assert_eq!(forced.existing, [first.id]);
        assert_ne!(forced.sale.id, first.id);

        cancel(&mut f.store, first.id, 4).unwrap();
        cancel(&mut f.store, forced.sale.id, 5).unwrap();
        let again = from_message(&mut f, CLAIM, NewSale::default(), 6).unwrap();
        assert!(again.existing.is_empty());
        assert_eq!(list(&f.store, &SaleFilter::default()).unwrap().len(), 3);
    }

    #[test]
    fn concurrent_creations_from_one_message_make_one_sale() {
        let f = fixture();
        let results: Vec<Result<Created, SaleError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let path = f.path.clone();
                    scope.spawn(move || {
                        let mut store = Store::open(&path).unwrap();
                        create_from_message(&mut store, CLAIM, &NewSale::default(), false, i)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let made = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(made, 1, "{results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(matches!(e, SaleError::AlreadySold { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn a_manual_sale_goes_to_the_buyers_latest_live_or_the_one_named() {
        let mut f = fixture();
        let sale = NewSale {
            item: Some("Z9".into()),
            price: eur("5"),
            ..NewSale::default()
        };
        let s = create_manual(&mut f.store, "@anna", None, &sale, 1).unwrap();
        assert_eq!((s.live_id, s.room_id), (f.second_live, ROOM_2));
        assert_eq!((s.msg_id, s.claim_id, s.buyer_id), (None, None, ANNA));
        assert_eq!(
            (s.item.as_deref(), s.quantity, s.status),
            (Some("Z9"), 1, SaleStatus::Pending)
        );
        let s = create_manual(&mut f.store, "43", Some(f.second_live), &sale, 2).unwrap();
        assert_eq!(
            (s.live_id, s.room_id, s.buyer_id),
            (f.second_live, ROOM_2, BOB)
        );
        let s = create_manual(&mut f.store, "bob", None, &sale, 3).unwrap();
        assert_eq!((s.live_id, s.room_id), (f.first_live, ROOM));

        let err = create_manual(&mut f.store, "@nobody", None, &sale, 4).unwrap_err();
        assert!(
            matches!(&err, SaleError::BuyerNotFound(b) if b == "@nobody"),
            "{err:?}"
        );
        assert_eq!(err.kind(), SaleErrorKind::NotFound);
        let err = create_manual(&mut f.store, "@anna", Some(99), &sale, 4).unwrap_err();
        assert!(matches!(err, SaleError::LiveNotFound(99)), "{err:?}");
        let no_item = NewSale {
            item: Some("  ".into()),
            ..sale
        };
        let err = create_manual(&mut f.store, "@anna", None, &no_item, 4).unwrap_err();
        assert!(matches!(err, SaleError::MissingItem), "{err:?}");
        assert_eq!(list(&f.store, &SaleFilter::default()).unwrap().len(), 3);
    }

    #[test]
    fn finding_a_message_or_a_buyers_live_reads_indexes_not_the_whole_table() {
        let f = fixture();
        let plan = |sql: &str, params: &[i64]| -> String {
            let conn = f.store.conn();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params_from_iter(params), |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let message = plan(MESSAGE, &[1]);
        assert!(
            message.contains("SEARCH events USING INDEX sqlite_autoindex_events_1 (msg_id=?)"),
            "{message}"
        );
        assert!(!message.contains("SCAN events"), "{message}");
        let live = plan(LATEST_EVENTS_OF_USER_SINCE, &[1, 2, 3, 4, 5]);
        assert!(
            live.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
            "{live}"
        );
    }

    /// Four sales at times 10, 20, 30, 40: anna's claim (live 1), bob's claim (live 1, then paid),
    /// anna's later claim (live 2), and a manual one for bob (live 2, cancelled).
    fn four_sales(f: &mut Fixture) -> [i64; 4] {
        let a = from_message(f, CLAIM, NewSale::default(), 10)
            .unwrap()
            .sale
            .id;
        let b = from_message(f, BOB_CLAIM, NewSale::default(), 20)
            .unwrap()
            .sale
            .id;
        let c = from_message(f, LATER_CLAIM, NewSale::default(), 30)
            .unwrap()
            .sale
            .id;
        let manual = NewSale {
            item: Some("X".into()),
            ..NewSale::default()
        };
        let d = create_manual(&mut f.store, "@bob", Some(f.second_live), &manual, 40)
            .unwrap()
            .id;
        let paid = SaleChanges {
            status: Some(SaleStatus::Paid),
            ..SaleChanges::default()
        };
        update(&mut f.store, b, &paid, 50).unwrap();
        cancel(&mut f.store, d, 60).unwrap();
        [a, b, c, d]
    }

    #[test]
    fn lists_are_oldest_first_and_filtered_by_live_buyer_status_and_time() {
        let mut f = fixture();
        let [a, b, c, d] = four_sales(&mut f);
        let ids = |filter: SaleFilter| -> Vec<i64> {
            list(&f.store, &filter)
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect()
        };
        assert_eq!(ids(SaleFilter::default()), [a, b, c, d]);
        assert_eq!(
            ids(SaleFilter {
                live: Some(f.first_live),
                ..SaleFilter::default()
            }),
            [a, b]
        );
        assert_eq!(
            ids(SaleFilter {
                buyer: Some("@bob".into()),
                ..SaleFilter::default()
            }),
            [b, d]
        );
        assert_eq!(
            ids(SaleFilter {
                status: Some(SaleStatus::Paid),
                ..SaleFilter::default()
            }),
            [b]
        );
        assert_eq!(
            ids(SaleFilter {
                since_ms: Some(30),
                ..SaleFilter::default()
            }),
            [c, d],
            "since is inclusive"
        );
        assert_eq!(
            ids(SaleFilter {
                live: Some(f.second_live),
                buyer: Some(ANNA.to_string()),
                status: Some(SaleStatus::Pending),
                since_ms: Some(0),
            }),
            [c]
        );
        assert!(
            ids(SaleFilter {
                status: Some(SaleStatus::Confirmed),
                ..SaleFilter::default()
            })
            .is_empty()
        );
        let unknown_buyer = SaleFilter {
            buyer: Some("@ghost".into()),
            ..SaleFilter::default()
        };
        assert!(matches!(
            list(&f.store, &unknown_buyer),
            Err(SaleError::BuyerNotFound(_))
        ));
        let unknown_live = SaleFilter {
            live: Some(77),
            ..SaleFilter::default()
        };
        assert!(matches!(
            list(&f.store, &unknown_live),
            Err(SaleError::LiveNotFound(77))
        ));
    }

    #[test]
    fn updates_change_what_they_name_and_move_updated_forward() {
        let mut f = fixture();
        let s = from_message(
            &mut f,
            CLAIM,
            NewSale {
                note: Some("first".into()),
                ..NewSale::default()
            },
            1_000,
        )
        .unwrap()
        .sale;
        let changes = SaleChanges {
            status: Some(SaleStatus::Confirmed),
            price: Some(Price {
                minor: 1500,
                currency: "JPY".into(),
            }),
            quantity: Some(3),
            variant: Some(String::new()),
            ..SaleChanges::default()
        };
        let u = update(&mut f.store, s.id, &changes, 2_000).unwrap();
        assert_eq!(u.status, SaleStatus::Confirmed);
        assert_eq!(
            (u.variant, u.quantity, u.note.as_deref()),
            (None, 3, Some("first"))
        );
        assert_eq!(u.item.as_deref(), Some("A12"), "not named, not changed");
        let json = serde_json::to_value(get(&f.store, s.id).unwrap()).unwrap();
        assert_eq!(
            (&json["unit_price"], &json["currency"], &json["total"]),
            (&"1500".into(), &"JPY".into(), &"4500".into())
        );
        assert_eq!((u.created_ms, u.updated_ms), (1_000, 2_000));

        // The clock went back: `updated` still moves forward.
        let note = SaleChanges {
            note: Some(" ".into()),
            ..SaleChanges::default()
        };
        let u = update(&mut f.store, s.id, &note, 1_500).unwrap();
        assert_eq!((u.note, u.updated_ms), (None, 2_001));
        // Nothing differs: nothing is written.
        let same = SaleChanges {
            status: Some(SaleStatus::Confirmed),
            quantity: Some(3),
            ..SaleChanges::default()
        };
        assert_eq!(
            update(&mut f.store, s.id, &same, 9_000).unwrap().updated_ms,
            2_001
        );

        let err = update(&mut f.store, s.id, &SaleChanges::default(), 9_000).unwrap_err();
        assert!(
            matches!(err, SaleError::NothingToChange(id) if id == s.id),
            "{err:?}"
        );
        assert_eq!(err.kind(), SaleErrorKind::Usage);
        let err = update(&mut f.store, 999, &same, 9_000).unwrap_err();
        assert!(matches!(err, SaleError::SaleNotFound(999)), "{err:?}");
        assert_eq!(err.kind(), SaleErrorKind::NotFound);
    }

    #[test]
    fn cancelling_twice_is_harmless_and_update_to_cancelled_is_a_cancel() {
        let mut f = fixture();
        let s = from_message(&mut f, CLAIM, NewSale::default(), 1)
            .unwrap()
            .sale;
        let once = cancel(&mut f.store, s.id, 2).unwrap();
        assert_eq!((once.status, once.updated_ms), (SaleStatus::Cancelled, 2));
        let twice = cancel(&mut f.store, s.id, 3).unwrap();
        assert_eq!(twice, once);
        let to_cancelled = SaleChanges {
            status: Some(SaleStatus::Cancelled),
            ..SaleChanges::default()
        };
        assert_eq!(update(&mut f.store, s.id, &to_cancelled, 4).unwrap(), once);
        assert!(matches!(
            cancel(&mut f.store, 404, 5),
            Err(SaleError::SaleNotFound(404))
        ));
    }

    #[test]
    fn a_cancelled_sale_comes_back_only_if_its_message_was_not_sold_again() {
        let mut f = fixture();
        let first = from_message(&mut f, CLAIM, NewSale::default(), 1)
            .unwrap()
            .sale;
        cancel(&mut f.store, first.id, 2).unwrap();
        let second = from_message(&mut f, CLAIM, NewSale::default(), 3)
            .unwrap()
            .sale;
        let back = SaleChanges {
            status: Some(SaleStatus::Paid),
            ..SaleChanges::default()
        };
        let err = update(&mut f.store, first.id, &back, 4).unwrap_err();
        match &err {
            SaleError::SoldAgain { id, other, .. } => {
                assert_eq!((*id, *other), (first.id, second.id))
            }
            other => panic!("expected SoldAgain, got {other:?}"),
        }
        assert_eq!(err.kind(), SaleErrorKind::NotFound);
        assert!(
            err.to_string()
                .contains(&format!("cancel sale {}", second.id)),
            "{err}"
        );
        assert_eq!(
            get(&f.store, first.id).unwrap().status,
            SaleStatus::Cancelled
        );
        // A cancelled sale may still be edited without coming back.
        let note = SaleChanges {
            note: Some("refunded".into()),
            ..SaleChanges::default()
        };
        assert_eq!(
            update(&mut f.store, first.id, &note, 5).unwrap().status,
            SaleStatus::Cancelled
        );

        cancel(&mut f.store, second.id, 6).unwrap();
        assert_eq!(
            update(&mut f.store, first.id, &back, 7).unwrap().status,
            SaleStatus::Paid
        );
        // A manual sale has no message to conflict with.
        let manual = NewSale {
            item: Some("X".into()),
            ..NewSale::default()
        };
        let m = create_manual(&mut f.store, "@anna", None, &manual, 8).unwrap();
        cancel(&mut f.store, m.id, 9).unwrap();
        assert_eq!(
            update(&mut f.store, m.id, &back, 10).unwrap().status,
            SaleStatus::Paid
        );
    }

    #[test]
    fn totals_that_do_not_fit_are_refused_and_prices_keep_their_currency() {
        let mut f = fixture();
        let huge = NewSale {
            price: Some(Price {
                minor: i64::MAX / 2,
                currency: "EUR".into(),
            }),
            quantity: Some(3),
            ..NewSale::default()
        };
        let err = from_message(&mut f, CLAIM, huge, 1).unwrap_err();
        assert!(
            matches!(err, SaleError::TooLarge { quantity: 3, .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), SaleErrorKind::Usage);
        assert!(
            list(&f.store, &SaleFilter::default()).unwrap().is_empty(),
            "nothing was written"
        );

        let s = from_message(
            &mut f,
            CLAIM,
            NewSale {
                price: Some(parse_price("1.234 KWD", "EUR").unwrap()),
                ..NewSale::default()
            },
            1,
        )
        .unwrap()
        .sale;
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            (&json["unit_price"], &json["currency"], &json["total"]),
            (&"1.234".into(), &"KWD".into(), &"2.468".into())
        );
        let more = SaleChanges {
            quantity: Some(u32::MAX),
            price: Some(Price {
                minor: i64::MAX / 1000,
                currency: "EUR".into(),
            }),
            ..SaleChanges::default()
        };
        let err = update(&mut f.store, s.id, &more, 2).unwrap_err();
        assert!(matches!(err, SaleError::TooLarge { .. }), "{err:?}");
        assert_eq!(get(&f.store, s.id).unwrap(), s, "unchanged");
    }
}
