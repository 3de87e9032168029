//! `tiklive sale`: create, list, update and cancel sales from the command line. Turns the flags into
//! the types of `orders`, and prints what comes back: an aligned table for a person at a terminal, JSON
//! (one object, or NDJSON for lists) for scripts, so `id=$(tiklive sale create … | jq .id)` works.

use std::io::{IsTerminal, Write};

use anyhow::Context;

use crate::cli::{
    SaleCancelArgs, SaleCommand, SaleCreateArgs, SaleListArgs, SaleOutputArgs, SaleStatusArg,
    SaleUpdateArgs,
};
use crate::error::{Exit, NotFoundError, UsageError, is_closed_pipe};
use crate::events::{now_ms, parse_time_arg};
use crate::money::{Price, format_minor, parse_price};
use crate::orders::{
    self, NewSale, Sale, SaleChanges, SaleError, SaleErrorKind, SaleFilter, SaleStatus,
};

use super::open_store;

pub fn run(command: SaleCommand) -> anyhow::Result<Exit> {
    match command {
        SaleCommand::Create(args) => create(args),
        SaleCommand::List(args) => list(args),
        SaleCommand::Update(args) => update(args),
        SaleCommand::Cancel(args) => cancel(args),
    }
}

fn create(args: SaleCreateArgs) -> anyhow::Result<Exit> {
    // Everything the flags can get wrong is checked before the database is opened.
    let sale = NewSale {
        item: args.item,
        variant: args.variant,
        quantity: args.qty,
        price: price(args.price.price.as_deref(), &args.price.currency)?,
        note: args.note,
    };
    let message = args.message.as_deref().map(parse_msg_id).transpose()?;
    let mut store = open_store(&args.output.db)?;
    let now = now_ms();
    let created = match (message, &args.buyer) {
        (Some(msg_id), _) => {
            let created = orders::create_from_message(&mut store, msg_id, &sale, args.force, now)
                .map_err(sale_error)?;
            if !created.from_claim {
                tracing::warn!(
                    "message {msg_id} is not a claim (a {} event); sale {} was made from what you gave",
                    created.message_type,
                    created.sale.id
                );
            }
            if !created.existing.is_empty() {
                tracing::warn!(
                    "message {msg_id} already had sale(s) {}; --force made another",
                    join_ids(&created.existing)
                );
            }
            if created.sale.item.is_none() {
                tracing::warn!(
                    "sale {} has no item: set it with `tiklive sale update {} --item CODE`",
                    created.sale.id,
                    created.sale.id
                );
            }
            created.sale
        }
        (None, Some(buyer)) => {
            orders::create_manual(&mut store, buyer, args.live, &sale, now).map_err(sale_error)?
        }
        // clap requires one of the two.
        (None, None) => {
            return Err(UsageError("pass --message MSG_ID or --buyer BUYER".into()).into());
        }
    };
    // A script that retries on failure must learn that this sale exists, or it makes another.
    let id = created.id;
    print(&[created], &args.output)
        .with_context(|| format!("sale {id} was created, but could not be printed"))
}

fn list(args: SaleListArgs) -> anyhow::Result<Exit> {
    let now = now_ms();
    let since_ms = args
        .since
        .as_deref()
        .map(|since| parse_time_arg(since, now).map_err(UsageError))
        .transpose()?;
    let filter = SaleFilter {
        live: args.live,
        buyer: args.buyer,
        status: args.status.map(status),
        since_ms,
    };
    let store = open_store(&args.output.db)?;
    let sales = orders::list(&store, &filter).map_err(sale_error)?;
    if sales.is_empty() {
        tracing::info!("no sale matches");
    }
    print(&sales, &args.output)
}

fn update(args: SaleUpdateArgs) -> anyhow::Result<Exit> {
    let changes = SaleChanges {
        status: args.status.map(status),
        item: args.item,
        variant: args.variant,
        quantity: args.qty,
        price: price(args.price.price.as_deref(), &args.price.currency)?,
        note: args.note,
    };
    if changes.is_empty() {
        return Err(sale_error(SaleError::NothingToChange(args.id)));
    }
    let mut store = open_store(&args.output.db)?;
    let sale = orders::update(&mut store, args.id, &changes, now_ms()).map_err(sale_error)?;
    print(&[sale], &args.output)
}

fn cancel(args: SaleCancelArgs) -> anyhow::Result<Exit> {
    let mut store = open_store(&args.output.db)?;
    let sale = orders::cancel(&mut store, args.id, now_ms()).map_err(sale_error)?;
    print(&[sale], &args.output)
}

fn status(arg: SaleStatusArg) -> SaleStatus {
    match arg {
        SaleStatusArg::Pending => SaleStatus::Pending,
        SaleStatusArg::Confirmed => SaleStatus::Confirmed,
        SaleStatusArg::Paid => SaleStatus::Paid,
        SaleStatusArg::Cancelled => SaleStatus::Cancelled,
    }
}

fn price(text: Option<&str>, currency: &str) -> anyhow::Result<Option<Price>> {
    Ok(text
        .map(|t| parse_price(t, currency).map_err(|e| UsageError(format!("--price: {e}"))))
        .transpose()?)
}

fn parse_msg_id(text: &str) -> anyhow::Result<u64> {
    text.trim().parse().map_err(|_| {
        UsageError(format!(
            "invalid message id {text:?}: give the msg_id printed by `tiklive watch`, a decimal number"
        ))
        .into()
    })
}

/// Gives a sale error the exit code its kind calls for.
fn sale_error(err: SaleError) -> anyhow::Error {
    match err.kind() {
        SaleErrorKind::Usage => UsageError(err.to_string()).into(),
        SaleErrorKind::NotFound => NotFoundError(err.to_string()).into(),
        SaleErrorKind::Database => anyhow::Error::new(err),
    }
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// JSON lines with `--json` or when stdout is not a terminal; a table otherwise. A closed stdout
/// (`| head -1`) is a normal end.
fn print(sales: &[Sale], output: &SaleOutputArgs) -> anyhow::Result<Exit> {
    let stdout = std::io::stdout();
    let text = if output.json || !stdout.is_terminal() {
        json_lines(sales)?
    } else {
        table(sales)
    };
    let mut out = stdout.lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(Exit::Success),
        Err(e) if is_closed_pipe(&e) => Ok(Exit::Success),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

fn json_lines(sales: &[Sale]) -> anyhow::Result<String> {
    let mut text = String::new();
    for sale in sales {
        text.push_str(&serde_json::to_string(sale).context("cannot write a sale as JSON")?);
        text.push('\n');
    }
    Ok(text)
}

const HEADER: [&str; 9] = [
    "ID",
    "STATUS",
    "BUYER",
    "ITEM",
    "VARIANT",
    "QTY",
    "PRICE",
    "TOTAL",
    "CREATED (UTC)",
];
/// Columns aligned right: the numbers.
const RIGHT: [bool; 9] = [true, false, false, false, false, true, true, true, false];

/// An aligned table, header first; nothing at all when there is no sale.
fn table(sales: &[Sale]) -> String {
    if sales.is_empty() {
        return String::new();
    }
    let amount = |p: Option<Price>| match p {
        Some(p) => format!("{} {}", format_minor(p.minor, &p.currency, '.'), p.currency),
        None => "-".to_owned(),
    };
    let rows: Vec<[String; 9]> = sales
        .iter()
        .map(|s| {
            let created = crate::events::rfc3339_ms(s.created_ms);
            [
                s.id.to_string(),
                s.status.to_string(),
                s.unique_id
                    .as_deref()
                    .map_or_else(|| s.buyer_id.to_string(), |h| format!("@{h}")),
                s.item.clone().unwrap_or_else(|| "-".into()),
                s.variant.clone().unwrap_or_else(|| "-".into()),
                s.quantity.to_string(),
                amount(s.price.clone()),
                amount(s.total()),
                // 2026-11-22 18:30:05
                created.get(..19).unwrap_or(&created).replacen('T', " ", 1),
            ]
            .map(|cell| printable(&cell))
        })
        .collect();
    let header = HEADER.map(str::to_owned);
    let mut widths = [0usize; 9];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i] - cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if RIGHT[i] {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Chat text reaches the terminal: control characters (escape sequences) are shown, not obeyed.
fn printable(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(id: i64, handle: Option<&str>, price: Option<(i64, &str)>, qty: u32) -> Sale {
        Sale {
            id,
            live_id: 1,
            room_id: 7,
            msg_id: None,
            claim_id: None,
            buyer_id: 42,
            unique_id: handle.map(str::to_owned),
            nickname: None,
            item: Some("A12".into()),
            variant: None,
            quantity: qty,
            price: price.map(|(minor, c)| Price {
                minor,
                currency: c.into(),
            }),
            status: SaleStatus::Pending,
            note: None,
            created_ms: 1_692_724_604_212,
            updated_ms: 1_692_724_604_212,
        }
    }

    #[test]
    fn table_aligns_columns_and_shows_missing_values_as_dashes() {
        let text = table(&[
            sale(9, Some("anna"), Some((1250, "EUR")), 2),
            sale(10, None, None, 1),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ID  STATUS   BUYER  ITEM  VARIANT  QTY      PRICE      TOTAL  CREATED (UTC)",
                " 9  pending  @anna  A12   -          2  12.50 EUR  25.00 EUR  2023-08-22 17:16:44",
                "10  pending  42     A12   -          1          -          -  2023-08-22 17:16:44",
            ]
        );
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn table_cells_cannot_carry_terminal_escapes() {
        let mut s = sale(1, Some("x"), None, 1);
        s.item = Some("\u{1b}[2JA1".into());
        let text = table(&[s]);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("\u{fffd}[2JA1"), "{text:?}");
    }

    #[test]
    fn message_ids_are_64_bit_decimals() {
        assert_eq!(
            parse_msg_id(" 18446744073709551615 ").unwrap(),
            u64::MAX,
            "the full range"
        );
        for bad in ["", "abc", "-1", "12.5", "18446744073709551616", "0x10"] {
            let err = parse_msg_id(bad).unwrap_err();
            assert!(err.is::<UsageError>(), "{bad:?}");
            assert!(err.to_string().contains("msg_id"), "{err}");
        }
    }
}
