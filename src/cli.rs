//! The command line, as clap derive types: the one source of truth for flags, help text, shell
//! completions and man pages. Commands turn these into core types; the core never sees them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36 Edg/128.0.2739.79";

const EXIT_CODES: &str = "\
Exit codes:
  0    the live ended, or stdout/stdin was closed
  1    other failure (unreadable recording, output file error, database write error)
  2    usage error (a bad flag, time, kind, price or id)
  3    user not found, or not live
  4    the signing service or TikTok refused the connection (rate limit, API key, plan)
  5    network failure after all retries
  6    the database cannot be opened (missing for export and sale, unreadable, another
       application's, or newer than tiklive)
  7    the sale, message, buyer or live named does not exist, or the message already has a
       sale (without --force)
  8    a TikTok login failed or must be done again (consent refused, wrong state, code or
       refresh token refused by TikTok, no callback in time)
  130  interrupted (Ctrl-C); 143 on SIGTERM";

const NDJSON_SCHEMA: &str = "\
Output (NDJSON, schema version 1): one JSON object per line. Every line has
  v        1 (the schema version)
  type     chat, gift, like, member, social, room_user, subscribe, question, emote,
           envelope, control, live_intro, im_delete, room_pin, caption, battle,
           unknown, connection
  ts       RFC 3339 time of the message (UTC, milliseconds)
  room_id  the room, as a string
  msg_id   TikTok's message id as a string (null on connection lines)
User events add \"user\": {id, unique_id, nickname, avatar_url, follow_role, is_moderator,
is_subscriber, gifter_level}. Type-specific fields:
  chat        comment, emotes[{emote_id, image_url, index}], claim{item, variant, quantity, raw}
  gift        gift_id, gift_name, gift_type, repeat_count, repeat_end, streaking, group_id,
              diamond_count, total_diamonds, gift_image_url, receiver_user_id
  like        like_count, total_like_count
  member      action_id (1 = joined), member_count
  social      social_type (follow, share, other), action_id, share_count, display_key
  room_user   viewer_count, total_viewers, top_viewers[{rank, coin_count, user}]
  subscribe   sub_month, subscribe_type, old_subscribe_status, subscribing_status
  question    question_id, question_text
  emote       emote_id, emote_image_url
  envelope    envelope_id, diamond_count, people_count, unpack_at, business_type,
              super_fan_box, sender_name
  control     action (pause, unpause, stream_end, stream_suspended, other), action_id, tips
  live_intro  intro_id, description
  im_delete   delete_msg_ids[], delete_user_ids[]
  room_pin    pinned, pinned_method, pinned_msg_id, pinned_comment, pinned_user,
              display_duration
  caption     sentence_id, definite, captions[{lang, text}]
  battle      battle_event (battle, armies), battle_id, action_id,
              scores[{host_user_id, points}], hosts[]
  unknown     method (a message tiklive does not model; counted, never fatal)
  connection  state (connected, reconnecting, gap, disconnected), attempt, delay_ms, reason
64-bit ids are strings. --include-raw adds the decoded protobuf under \"raw\".";

/// TikTok LIVE toolkit for sellers: every chat claim, gift, like and viewer count, as it happens.
#[derive(Debug, Parser)]
#[command(name = "tiklive", version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    /// Print only errors on stderr.
    #[arg(short, long, global = true, env = "TIKLIVE_QUIET", value_parser = clap::builder::FalseyValueParser::new())]
    pub quiet: bool,

    /// More detail on stderr (-v debug, -vv trace). TIKLIVE_LOG takes a full filter instead.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The file logs also go to (`serve --log-file`).
    pub fn log_file(&self) -> Option<&std::path::Path> {
        match &self.command {
            Command::Serve(args) => args.log_file.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to a live and print every event to stdout as NDJSON, one object per line.
    #[command(after_help = EXIT_CODES, after_long_help = concat_help())]
    Watch(Box<WatchArgs>),
    /// Print the events of a recording made with `watch --record`, exactly as watch printed them.
    #[command(after_help = EXIT_CODES, after_long_help = concat_help())]
    Replay(ReplayArgs),
    /// Create, list, update and cancel sales made from chat claims.
    #[command(subcommand)]
    Sale(SaleCommand),
    /// Follow lives, store everything, and serve an HTTP API, a WebSocket feed and the dashboard.
    #[command(after_help = EXIT_CODES, after_long_help = SERVE_HELP)]
    Serve(Box<ServeArgs>),
    /// Make a self-signed certificate (cert.pem, key.pem) for local HTTPS with `serve`.
    #[command(name = "gen-cert", after_help = EXIT_CODES)]
    GenCert(GenCertArgs),
    /// Write stored history as CSV (RFC 4180, UTF-8, header first).
    #[command(after_help = EXIT_CODES, after_long_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Log in with a TikTok account (Login Kit, desktop flow); list (--status) or refresh the accounts.
    #[command(after_help = EXIT_CODES, after_long_help = login_help())]
    Login(LoginArgs),
    /// Revoke an account's authorisation at TikTok and delete its tokens from the database.
    #[command(after_help = EXIT_CODES)]
    Logout(LogoutArgs),
}

const LOGIN_HELP: &str = "\
Setup: create an app on developers.tiktok.com with Login Kit for Desktop, register a redirect URI
on the loopback address with a port, e.g. http://127.0.0.1:3455/callback/ (or
http://127.0.0.1:*/callback/ for any port), and set in .env or the environment:
  TIKTOK_CLIENT_KEY      the app's Client key
  TIKTOK_CLIENT_SECRET   the app's Client secret (read from the environment only, never a flag)
  TIKTOK_REDIRECT_URI    the redirect URI exactly as registered
`tiklive login` then prints the authorize URL on stderr (on a line of its own) and opens it in the
browser when there is a display; TikTok sends the browser back to the redirect URI, where tiklive
waits. Tokens are stored in the database (mode 0600) and never printed.";

fn login_help() -> String {
    format!("{LOGIN_HELP}\n\n{EXIT_CODES}")
}

fn concat_help() -> String {
    format!("{NDJSON_SCHEMA}\n\n{EXIT_CODES}")
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The host: `@user`, `user`, or a live URL such as https://www.tiktok.com/@user/live.
    pub user: String,

    /// Append every raw push frame received to FILE (4-byte big-endian length, then the frame).
    #[arg(long, value_name = "FILE", env = "TIKLIVE_RECORD")]
    pub record: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub auto_sale: AutoSaleArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording to read, or `-` for stdin.
    pub file: PathBuf,

    /// Decoding threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// The host the recording was made from, as stored in `lives.host` (default: the file name).
    #[arg(long, value_name = "USER")]
    pub host: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub store: StoreArgs,
}

const SERVE_HELP: &str = "\
HTTP API (JSON; errors are {\"error\": {\"code\", \"message\"}}):
  GET    /health               liveness and readiness (503 when the store cannot be written)
  GET    /status               every followed live: state, room, viewers, likes, counts
  POST   /connect              {\"username\"}: follow a live, or reconnect it
  POST   /disconnect           {\"username\"}: stop following it
  GET    /events               ?live=USER&type=chat&limit=100&before=MSG_ID
  GET    /claims               ?live=LIVE_ID&limit=N
  GET    /sales                ?live=LIVE_ID&buyer=@handle&status=paid&since=24h
  POST   /sales                {\"message_id\" | \"buyer\", \"item\", \"variant\", \"quantity\", \"price\", \"note\", \"force\"}
  PATCH  /sales/ID             {\"status\", \"price\", \"quantity\", \"note\", \"item\", \"variant\"}
  DELETE /sales/ID             cancels the sale (nothing is deleted)
  GET    /buyers/ID            a buyer (numeric id or @handle) across lives
  GET    /export/KIND.csv      the same kinds and filters as `tiklive export`
  GET    /ws                   WebSocket feed (also on --ws-port, at any path)
  GET    /accounts             the connected TikTok accounts (handle, avatar, scopes, expiry)
  GET    /oauth                Connect TikTok: starts the login (no API token; a cookie binds it)
  GET    /callback, /webhook   where TikTok sends the browser back (also POST /webhook)
The dashboard is served at /. Connect TikTok needs TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET and
the redirect URI registered for the app (--redirect-uri / TIKTOK_REDIRECT_URI).
Off loopback, TIKLIVE_API_TOKEN is required: send `Authorization: Bearer TOKEN` (or `?token=TOKEN` on the WebSocket). SIGTERM or SIGINT
closes WebSockets with 1001, commits the store and exits 0.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A host to follow from the start (repeatable, or comma-separated in TIKTOK_USERNAME).
    #[arg(
        long = "user",
        value_name = "USER",
        env = "TIKTOK_USERNAME",
        value_delimiter = ','
    )]
    pub users: Vec<String>,

    /// The address to listen on. Anything but loopback needs TIKLIVE_API_TOKEN.
    #[arg(
        long,
        value_name = "ADDR",
        env = "TIKLIVE_BIND",
        default_value = "127.0.0.1"
    )]
    pub bind: std::net::IpAddr,

    /// The port of the API, the dashboard and the WebSocket at /ws.
    #[arg(long, value_name = "PORT", env = "PORT", default_value_t = 3001)]
    pub port: u16,

    /// A second port serving only the WebSocket feed, at any path (0: none).
    #[arg(long, value_name = "PORT", env = "WS_PORT", default_value_t = 3002)]
    pub ws_port: u16,

    /// The bearer token of the API and the WebSocket (required off loopback).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TIKLIVE_API_TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,

    /// Allow browser requests from this origin, e.g. https://shop.example (repeatable; CORS is off
    /// without it).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,

    /// Serve HTTPS and WSS with this certificate (PEM, e.g. from `tiklive gen-cert`).
    #[arg(
        long,
        value_name = "FILE",
        env = "TIKLIVE_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        value_name = "FILE",
        env = "TIKLIVE_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Also write logs to FILE, rotated daily (FILE.YYYY-MM-DD).
    #[arg(long, value_name = "FILE", env = "TIKLIVE_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Regular expression that replaces the claim keyword (default: JP, j'prends, je prends…).
    #[arg(long, value_name = "REGEX", env = "TIKLIVE_CLAIM_PATTERN")]
    pub claim_pattern: Option<String>,

    /// While a followed host is not live, check again this often, and follow each new live of
    /// theirs (0: stop at the first "not live").
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_OFFLINE_POLL", default_value = "60s", value_parser = parse_duration)]
    pub offline_poll: Duration,

    /// Commit stored events at least this often.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_COMMIT_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub commit_interval: Duration,

    /// Commit at most this many events in one transaction.
    #[arg(long, value_name = "N", env = "TIKLIVE_COMMIT_EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub commit_events: u32,

    /// The redirect URI of the dashboard's "Connect TikTok" flow, exactly as registered for the app:
    /// this server's /callback/ or /webhook/ URL (default: http(s)://localhost:PORT/callback/).
    #[arg(long, value_name = "URI", env = "TIKTOK_REDIRECT_URI")]
    pub redirect_uri: Option<String>,

    /// Scopes the dashboard's "Connect TikTok" asks for, comma-separated.
    #[arg(
        long,
        value_name = "SCOPES",
        env = "TIKLIVE_SCOPES",
        default_value = crate::oauth::DEFAULT_SCOPES
    )]
    pub scopes: String,

    #[command(flatten)]
    pub oauth: OAuthAppArgs,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub auto_sale: AutoSaleArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct GenCertArgs {
    /// Directory for cert.pem and key.pem (created, private, if missing).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out_dir: PathBuf,

    /// Another name or IP address the certificate is valid for, e.g. a LAN name or address so that a
    /// phone can reach the dashboard (repeatable; localhost, 127.0.0.1 and ::1 are always included).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,

    /// Days of validity.
    #[arg(long, value_name = "N", default_value_t = 365)]
    pub days: u32,

    /// Replace existing cert.pem and key.pem.
    #[arg(long)]
    pub force: bool,

    /// Print one JSON object instead of lines of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The account for --refresh or --status: `@handle`, handle or open id (default: the only one).
    #[arg(value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// List the logged-in accounts (handle, nickname, open id, scopes, expiry; no secret).
    #[arg(long, conflicts_with_all = ["refresh", "no_browser", "port", "timeout"])]
    pub status: bool,

    /// Refresh the account's tokens now.
    #[arg(long, conflicts_with_all = ["no_browser", "port", "timeout"])]
    pub refresh: bool,

    /// Print the authorize URL only; do not open a browser (always so without a display).
    #[arg(long)]
    pub no_browser: bool,

    /// Port of the callback server, replacing the redirect URI's (register the URI with this port or *).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// How long to wait for the browser to come back.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Scopes to ask for, comma-separated.
    #[arg(
        long,
        value_name = "SCOPES",
        env = "TIKLIVE_SCOPES",
        default_value = crate::oauth::DEFAULT_SCOPES
    )]
    pub scopes: String,

    /// The redirect URI registered for the app: http on 127.0.0.1, localhost or [::1], with a port.
    #[arg(
        long,
        value_name = "URI",
        env = "TIKTOK_REDIRECT_URI",
        default_value = crate::oauth::DEFAULT_REDIRECT_URI
    )]
    pub redirect_uri: String,

    /// Print JSON (one object per account) instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub oauth: OAuthArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The account: `@handle`, handle or open id (default: the only one).
    #[arg(value_name = "ACCOUNT")]
    pub account: Option<String>,

    /// Only delete the tokens here; do not revoke them at TikTok (e.g. offline).
    #[arg(long)]
    pub local_only: bool,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub oauth: OAuthArgs,
}

/// The TikTok app and where TikTok is, shared by `login` and `logout`.
#[derive(Debug, Args)]
pub struct OAuthArgs {
    #[command(flatten)]
    pub app: OAuthAppArgs,

    /// Timeout of each request to TikTok.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_HTTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_timeout: Duration,

    /// Refresh an access token that expires within this time before using it.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_REFRESH_BEFORE", default_value = "5m", value_parser = parse_duration)]
    pub refresh_before: Duration,

    #[command(flatten)]
    pub db: DbArgs,
}

/// The TikTok app's Client key and where TikTok is, shared by `login`, `logout` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct OAuthAppArgs {
    /// The app's Client key (the Client secret comes from TIKTOK_CLIENT_SECRET only).
    #[arg(
        long,
        value_name = "KEY",
        env = "TIKTOK_CLIENT_KEY",
        hide_env_values = true
    )]
    pub client_key: Option<String>,

    /// Base URL of TikTok's authorize page (`/v2/auth/authorize/` is appended).
    #[arg(
        long,
        value_name = "URL",
        env = "TIKLIVE_AUTH_URL",
        default_value = crate::oauth::DEFAULT_AUTH_URL
    )]
    pub auth_url: String,

    /// Base URL of TikTok's Open API (`/v2/oauth/token/`, `/v2/user/info/`… are appended).
    #[arg(
        long,
        value_name = "URL",
        env = "TIKLIVE_OPEN_API_URL",
        default_value = crate::oauth::DEFAULT_OPEN_API_URL
    )]
    pub open_api_url: String,
}

/// The database file, shared by every command that reads or writes it.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The database (default: $XDG_DATA_HOME/tiklive/tiklive.db, else ~/.local/share/tiklive/tiklive.db).
    #[arg(long, value_name = "PATH", env = "TIKLIVE_DB")]
    pub db: Option<PathBuf>,
}

/// Whether and how `watch` and `replay` store what they print.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub db: DbArgs,

    /// Do not store anything; only print.
    #[arg(long, env = "TIKLIVE_NO_STORE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_store: bool,

    /// Commit stored events at least this often.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_COMMIT_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub commit_interval: Duration,

    /// Commit at most this many events in one transaction.
    #[arg(long, value_name = "N", env = "TIKLIVE_COMMIT_EVENTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub commit_events: u32,
}

/// `watch --auto-sale`: a pending sale for every claim, as it arrives.
#[derive(Debug, Args)]
pub struct AutoSaleArgs {
    /// Create a pending sale for every claim as it arrives (item, variant and quantity from the claim).
    #[arg(long, env = "TIKLIVE_AUTO_SALE", value_parser = clap::builder::FalseyValueParser::new())]
    pub auto_sale: bool,

    /// CSV of item code to unit price (`item,price[,currency]`, header optional), for --auto-sale.
    #[arg(
        long,
        value_name = "FILE",
        env = "TIKLIVE_PRICE_LIST",
        requires = "auto_sale"
    )]
    pub price_list: Option<PathBuf>,

    /// ISO 4217 currency of prices given without one.
    #[arg(
        long,
        value_name = "CODE",
        env = "TIKLIVE_CURRENCY",
        default_value = "EUR"
    )]
    pub currency: String,
}

#[derive(Debug, Subcommand)]
pub enum SaleCommand {
    /// Create a sale from a chat message (usually a claim), or a manual sale for a buyer.
    #[command(after_help = EXIT_CODES)]
    Create(SaleCreateArgs),
    /// List sales, oldest first.
    #[command(after_help = EXIT_CODES)]
    List(SaleListArgs),
    /// Change a sale's status, price, quantity or note.
    #[command(after_help = EXIT_CODES)]
    Update(SaleUpdateArgs),
    /// Cancel a sale (nothing is deleted; its message can then be sold again).
    #[command(after_help = EXIT_CODES)]
    Cancel(SaleCancelArgs),
}

/// How a sale command prints: a table on a terminal, JSON otherwise.
#[derive(Debug, Args)]
pub struct SaleOutputArgs {
    /// Print JSON (one object; NDJSON for lists) even on a terminal.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["message", "buyer"])))]
pub struct SaleCreateArgs {
    /// The chat message the sale comes from (its msg_id, as printed by watch).
    #[arg(long, value_name = "MSG_ID")]
    pub message: Option<String>,

    /// A manual sale for this buyer: `@handle` or TikTok's numeric user id (needs --item).
    #[arg(long, value_name = "BUYER", requires = "item")]
    pub buyer: Option<String>,

    /// The live of a manual sale (default: the buyer's latest live).
    #[arg(long, value_name = "LIVE_ID", requires = "buyer")]
    pub live: Option<i64>,

    /// Item code (default: the claim's).
    #[arg(long, value_name = "CODE")]
    pub item: Option<String>,

    /// Variant, e.g. a size (default: the claim's).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,

    /// Quantity (default: the claim's, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub qty: Option<u32>,

    #[command(flatten)]
    pub price: PriceArgs,

    /// A free note.
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,

    /// Create the sale even if the message already has one that is not cancelled.
    #[arg(long, conflicts_with = "buyer")]
    pub force: bool,

    #[command(flatten)]
    pub output: SaleOutputArgs,
}

/// A sale's unit price, shared by `sale create` and `sale update`.
#[derive(Debug, Args)]
pub struct PriceArgs {
    /// Unit price, e.g. 12.50 or 12,50; `12.50 USD` names the currency.
    #[arg(long, value_name = "PRICE", allow_negative_numbers = true)]
    pub price: Option<String>,

    /// ISO 4217 currency of the price, when it names none.
    #[arg(
        long,
        value_name = "CODE",
        env = "TIKLIVE_CURRENCY",
        default_value = "EUR"
    )]
    pub currency: String,
}

#[derive(Debug, Args)]
pub struct SaleListArgs {
    /// Only the sales of this live (its id in the database).
    #[arg(long, value_name = "LIVE_ID")]
    pub live: Option<i64>,

    /// Only this buyer's sales: `@handle` or numeric user id.
    #[arg(long, value_name = "BUYER")]
    pub buyer: Option<String>,

    /// Only sales with this status.
    #[arg(long, value_enum)]
    pub status: Option<SaleStatusArg>,

    /// Only sales created at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d back).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    #[command(flatten)]
    pub output: SaleOutputArgs,
}

#[derive(Debug, Args)]
pub struct SaleUpdateArgs {
    /// The sale's id.
    pub id: i64,

    /// New status (`cancelled` is the same as `sale cancel`).
    #[arg(long, value_enum)]
    pub status: Option<SaleStatusArg>,

    /// Item code (an empty text removes it).
    #[arg(long, value_name = "CODE")]
    pub item: Option<String>,

    /// Variant, e.g. a size (an empty text removes it).
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,

    #[command(flatten)]
    pub price: PriceArgs,

    /// Quantity.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub qty: Option<u32>,

    /// Replace the note (an empty text removes it).
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,

    #[command(flatten)]
    pub output: SaleOutputArgs,
}

#[derive(Debug, Args)]
pub struct SaleCancelArgs {
    /// The sale's id.
    pub id: i64,

    #[command(flatten)]
    pub output: SaleOutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaleStatusArg {
    Pending,
    Confirmed,
    Paid,
    Cancelled,
}

/// The long help of `export`: its kinds and their columns, which a test in `export` keeps in step with
/// what it writes.
pub(crate) const EXPORT_HELP: &str = "\
Kinds and their columns (the first row of the CSV is this header):
  events   id, live_id, room_id, msg_id, type, time, user_id, unique_id, nickname, comment,
           gift_id, gift_name, repeat_count, total_diamonds, streaking, like_count,
           total_like_count, viewer_count, json  (streaking 1: an in-progress gift streak update)
  chat     id, live_id, room_id, msg_id, time, user_id, unique_id, nickname, comment,
           claim_item, claim_variant, claim_quantity
  gifts    id, live_id, room_id, msg_id, time, user_id, unique_id, nickname, gift_id, gift_name,
           repeat_count, diamond_count, total_diamonds  (finished streaks only)
  likes    id, live_id, room_id, msg_id, time, user_id, unique_id, nickname, like_count,
           total_like_count
  members  id, live_id, room_id, msg_id, time, user_id, unique_id, nickname, action_id
  social   id, live_id, room_id, msg_id, time, user_id, unique_id, nickname, social_type,
           share_count
  viewers  id, live_id, room_id, msg_id, time, viewer_count, total_viewers
  claims   id, live_id, room_id, msg_id, time, user_id, unique_id, nickname, item, variant,
           quantity, raw, rank  (rank: order of arrival in the live, 1 = first)
  sales    id, live_id, room_id, msg_id, buyer_id, unique_id, nickname, item, variant, quantity,
           unit_price, currency, total, status, note, created, updated
  buyers   id, unique_id, nickname, avatar_url, first_seen, last_seen, events, claims, sales
           (sales: not cancelled)
Rows come in the order they were stored (their id; buyers by TikTok id). Times are RFC 3339
UTC with milliseconds; TikTok ids are written in full. A text cell that starts with = + - @, a
tab or a carriage return gets a leading ' so that no spreadsheet runs it as a formula.

TIME accepts RFC 3339, a date (2026-11-22 or 20261122, midnight UTC), a Unix time in seconds or
milliseconds, or a duration back from now (90m, 24h, 7d). --since and --until apply to the time of
events and claims and to the creation of sales; buyers are those with an event, claim or sale
within the filters, counted there.

--incremental NAME exports the rows stored since the last export with that NAME (all of them the
first time), and moves its cursor only once the output is complete: a failed or interrupted run
is exported again by the next one. Use one name per kind and the same filters on every run;
buyers cannot be exported incrementally.";

/// Which rows `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportKind {
    Events,
    Chat,
    Gifts,
    Likes,
    Members,
    Social,
    Viewers,
    Claims,
    Sales,
    Buyers,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export.
    #[arg(value_enum, default_value = "events")]
    pub kind: ExportKind,

    /// Only rows at or after this time (RFC 3339, a date, a Unix time, or 24h / 7d / 90m back).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only rows before this time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only this live (its id in the database, as in `sale list`).
    #[arg(long, value_name = "LIVE_ID", conflicts_with = "room")]
    pub live: Option<i64>,

    /// Only this TikTok room.
    #[arg(long, value_name = "ROOM_ID")]
    pub room: Option<u64>,

    /// Only this user's rows: `@handle` or numeric user id.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Write to FILE (atomically: a temporary file renamed into place) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Start with a UTF-8 byte order mark, for Excel.
    #[arg(long)]
    pub bom: bool,

    /// Field delimiter: one ASCII character, e.g. ';' for French spreadsheets, or `tab` [default: ',',
    /// or ';' with --excel-fr].
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// For French Excel: a BOM, ';' as delimiter and decimal commas in prices.
    #[arg(long)]
    pub excel_fr: bool,

    /// Export only rows added since the last export with this NAME (a cursor kept in the database).
    #[arg(long, value_name = "NAME")]
    pub incremental: Option<String>,

    #[command(flatten)]
    pub db: DbArgs,
}

/// What is printed, shared by `watch` and `replay`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print only these event types (comma-separated), e.g. `chat,gift`.
    #[arg(
        long,
        value_name = "TYPES",
        value_delimiter = ',',
        env = "TIKLIVE_FILTER"
    )]
    pub filter: Vec<String>,

    /// Print only chat lines that are claims ("JP 12", "j'prends A3 M x2"…).
    #[arg(long)]
    pub claims_only: bool,

    /// Regular expression that replaces the claim keyword (default: JP, j'prends, je prends…).
    #[arg(long, value_name = "REGEX", env = "TIKLIVE_CLAIM_PATTERN")]
    pub claim_pattern: Option<String>,

    /// Also print each in-progress update of a gift streak (flagged "streaking": true).
    #[arg(long)]
    pub gift_streaks: bool,

    /// Add the decoded protobuf message as JSON under "raw".
    #[arg(long)]
    pub include_raw: bool,

    /// How many recent message ids are remembered to drop duplicates.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        hide_short_help = true
    )]
    pub dedupe_window: usize,
}

/// Where and how to connect.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Use this room id and skip the username lookup.
    #[arg(long, value_name = "ID")]
    pub room_id: Option<u64>,

    /// Base URL of TikTok's web site (live page and api-live).
    #[arg(
        long,
        value_name = "URL",
        env = "TIKLIVE_WEB_URL",
        default_value = "https://www.tiktok.com"
    )]
    pub web_url: String,

    /// Base URL of TikTok's webcast API (room info).
    #[arg(
        long,
        value_name = "URL",
        env = "TIKLIVE_WEBCAST_URL",
        default_value = "https://webcast.tiktok.com"
    )]
    pub webcast_url: String,

    /// Base URL of the signing service.
    #[arg(
        long,
        value_name = "URL",
        env = "TIKLIVE_SIGN_URL",
        default_value = "https://api.eulerstream.com"
    )]
    pub sign_url: String,

    /// API key for the signing service (sent as the x-api-key header).
    #[arg(
        long,
        value_name = "KEY",
        env = "TIKLIVE_SIGN_API_KEY",
        hide_env_values = true
    )]
    pub sign_api_key: Option<String>,

    /// TikTok session id for a logged-in connection (shared with TikTok and the signing service).
    #[arg(
        long,
        value_name = "ID",
        env = "TIKLIVE_SESSION_ID",
        hide_env_values = true
    )]
    pub session_id: Option<String>,

    /// Data centre of the logged-in account (the tt-target-idc cookie), e.g. eu-ttp2.
    #[arg(long, value_name = "IDC", env = "TIKLIVE_TT_TARGET_IDC")]
    pub tt_target_idc: Option<String>,

    /// HTTP proxy for every request, the WebSocket included, e.g. http://user:pass@host:3128.
    #[arg(
        long,
        value_name = "URL",
        env = "TIKLIVE_PROXY",
        hide_env_values = true
    )]
    pub proxy: Option<String>,

    /// The User-Agent used towards TikTok; the signature is bound to it.
    #[arg(long, value_name = "UA", env = "TIKLIVE_USER_AGENT", default_value = DEFAULT_USER_AGENT, hide_default_value = true)]
    pub user_agent: String,

    /// Reconnect attempts after a drop before giving up.
    #[arg(
        long,
        value_name = "N",
        env = "TIKLIVE_MAX_RETRIES",
        default_value_t = 5
    )]
    pub max_retries: u32,

    /// Base delay between reconnects; attempt n waits n times this, plus jitter.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_RETRY_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub retry_delay: Duration,

    /// Reconnect when no frame arrives for this long.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_DEAD_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub dead_after: Duration,

    /// Interval between heartbeats sent to TikTok.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Timeout of each HTTP request and of the WebSocket handshake.
    #[arg(long, value_name = "DURATION", env = "TIKLIVE_HTTP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http_timeout: Duration,

    /// Ask TikTok for uncompressed payloads instead of gzip.
    #[arg(long)]
    pub no_compress: bool,
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (examples: 500ms, 5s, 2m, 1h)"))?;
    let seconds = match unit.trim() {
        "" => value,
        unit => match crate::events::duration_unit_ms(unit) {
            Some(ms) => value * ms as f64 / 1000.0,
            None => {
                return Err(format!(
                    "unknown duration unit {unit:?} (use ms, s, m, h, d or w)"
                ));
            }
        },
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn filter_accepts_repeated_and_comma_separated_types() {
        let cli = Cli::try_parse_from([
            "tiklive",
            "replay",
            "-",
            "--filter",
            "chat,gift",
            "--filter",
            "like",
        ])
        .unwrap();
        let Command::Replay(args) = cli.command else {
            panic!("expected replay")
        };
        assert_eq!(args.output.filter, ["chat", "gift", "like"]);
    }
}
