//! The command line, as clap derive types: the one source of truth for flags, help text, shell
//! completions and man pages. Commands turn these into core types; the core never sees them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36 Edg/128.0.2739.79";

const EXIT_CODES: &str = "\
Exit codes:
  0    the live ended, or stdout/stdin was closed
  1    other failure (unreadable recording, output file error)
  2    usage error
  3    user not found, or not live
  4    the signing service or TikTok refused the connection (rate limit, API key, plan)
  5    network failure after all retries
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to a live and print every event to stdout as NDJSON, one object per line.
    #[command(after_help = EXIT_CODES, after_long_help = concat_help())]
    Watch(Box<WatchArgs>),
    /// Print the events of a recording made with `watch --record`, exactly as watch printed them.
    #[command(after_help = EXIT_CODES, after_long_help = concat_help())]
    Replay(ReplayArgs),
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
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording to read, or `-` for stdin.
    pub file: PathBuf,

    /// Decoding threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub output: OutputArgs,
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
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
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
