//! The typed `Event` every sink consumes (stdout NDJSON today; the store and the WebSocket feed later),
//! and its one JSON encoding, so that no two outputs can disagree about what an event is.

mod decode;
mod time;

use serde::Serialize;

use crate::claims::Claim;
use crate::protocol::messages::id_str;

pub use decode::{DecodeOptions, decode_message};
pub use time::{duration_unit_ms, format_rfc3339_ms, now_ms, parse_time_arg, rfc3339_ms};

/// Version of the NDJSON schema, written as `"v"` on every line.
pub const SCHEMA_VERSION: u32 = 1;

/// One thing that happened in a live, decoded from one webcast message (or a connection change).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub room_id: u64,
    /// TikTok's message id; 0 for lines tiklive makes itself (connection changes).
    pub msg_id: u64,
    /// Creation time in Unix milliseconds.
    pub ts_ms: i64,
    pub user: Option<EventUser>,
    pub data: EventData,
    /// The decoded protobuf, only with `--include-raw`.
    pub raw: Option<serde_json::Value>,
}

/// The user block of user events, with the signals derived from badges (PROTOCOL.md §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventUser {
    #[serde(serialize_with = "id_str")]
    pub id: u64,
    pub unique_id: String,
    pub nickname: String,
    pub avatar_url: Option<String>,
    pub follow_role: u64,
    pub is_moderator: bool,
    pub is_subscriber: bool,
    pub gifter_level: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmoteRef {
    pub emote_id: String,
    pub image_url: Option<String>,
    /// Position in the comment where the emote was inserted.
    pub index: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopViewer {
    pub rank: u64,
    pub coin_count: u64,
    pub user: Option<EventUser>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptionLine {
    pub lang: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BattleScore {
    #[serde(serialize_with = "id_str")]
    pub host_user_id: u64,
    pub points: i64,
}

/// Social messages are classified by display key, not by `action` (§3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocialKind {
    Follow,
    Share,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Pause,
    Unpause,
    /// Ended by the host (action 3).
    StreamEnd,
    /// Ended or suspended by TikTok (action 4).
    StreamSuspended,
    Other,
}

impl ControlAction {
    pub fn ends_stream(self) -> bool {
        matches!(
            self,
            ControlAction::StreamEnd | ControlAction::StreamSuspended
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connected,
    Reconnecting,
    /// Events may have been missed between the previous connection and this one.
    Gap,
    Disconnected,
}

/// Type-specific fields; each variant is one value of `"type"`. Field names follow the classic
/// connector (`comment`, `gift_id`, `repeat_count`, …) in snake_case.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Chat {
        comment: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        emotes: Vec<EmoteRef>,
        #[serde(skip_serializing_if = "Option::is_none")]
        claim: Option<Claim>,
    },
    Gift {
        gift_id: u64,
        gift_name: String,
        gift_type: u64,
        repeat_count: u64,
        repeat_end: bool,
        /// An in-progress update of a streak (only printed with `--gift-streaks`).
        streaking: bool,
        #[serde(serialize_with = "id_str")]
        group_id: u64,
        /// Price of one gift in diamonds.
        diamond_count: u64,
        /// `diamond_count × repeat_count`.
        total_diamonds: u64,
        gift_image_url: Option<String>,
        #[serde(serialize_with = "opt_id_str")]
        receiver_user_id: Option<u64>,
    },
    Like {
        like_count: u64,
        total_like_count: u64,
    },
    Member {
        action_id: u64,
        member_count: u64,
    },
    Social {
        social_type: SocialKind,
        action_id: u64,
        share_count: u64,
        display_key: String,
    },
    RoomUser {
        viewer_count: u64,
        total_viewers: u64,
        top_viewers: Vec<TopViewer>,
    },
    Subscribe {
        sub_month: u64,
        subscribe_type: u64,
        old_subscribe_status: u64,
        subscribing_status: u64,
    },
    Question {
        #[serde(serialize_with = "id_str")]
        question_id: u64,
        question_text: String,
    },
    Emote {
        emote_id: String,
        emote_image_url: Option<String>,
    },
    Envelope {
        envelope_id: String,
        diamond_count: u64,
        people_count: u64,
        unpack_at: u64,
        business_type: u64,
        super_fan_box: bool,
        sender_name: String,
    },
    Control {
        action: ControlAction,
        action_id: u64,
        tips: String,
    },
    LiveIntro {
        #[serde(serialize_with = "id_str")]
        intro_id: u64,
        description: String,
    },
    ImDelete {
        delete_msg_ids: Vec<String>,
        delete_user_ids: Vec<String>,
    },
    RoomPin {
        pinned: bool,
        pinned_method: String,
        #[serde(serialize_with = "id_str")]
        pinned_msg_id: u64,
        pinned_comment: Option<String>,
        pinned_user: Option<EventUser>,
        display_duration: i64,
    },
    Caption {
        #[serde(serialize_with = "id_str")]
        sentence_id: u64,
        definite: bool,
        captions: Vec<CaptionLine>,
    },
    Battle {
        battle_event: &'static str,
        #[serde(serialize_with = "id_str")]
        battle_id: u64,
        action_id: u64,
        scores: Vec<BattleScore>,
        hosts: Vec<EventUser>,
    },
    Unknown {
        method: String,
    },
    Connection {
        state: ConnectionState,
        #[serde(skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        delay_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

fn opt_id_str<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Every value `"type"` can take, in the order the README documents them.
pub const EVENT_TYPES: &[&str] = &[
    "chat",
    "gift",
    "like",
    "member",
    "social",
    "room_user",
    "subscribe",
    "question",
    "emote",
    "envelope",
    "control",
    "live_intro",
    "im_delete",
    "room_pin",
    "caption",
    "battle",
    "unknown",
    "connection",
];

impl EventData {
    /// The `"type"` of the line.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::Chat { .. } => "chat",
            EventData::Gift { .. } => "gift",
            EventData::Like { .. } => "like",
            EventData::Member { .. } => "member",
            EventData::Social { .. } => "social",
            EventData::RoomUser { .. } => "room_user",
            EventData::Subscribe { .. } => "subscribe",
            EventData::Question { .. } => "question",
            EventData::Emote { .. } => "emote",
            EventData::Envelope { .. } => "envelope",
            EventData::Control { .. } => "control",
            EventData::LiveIntro { .. } => "live_intro",
            EventData::ImDelete { .. } => "im_delete",
            EventData::RoomPin { .. } => "room_pin",
            EventData::Caption { .. } => "caption",
            EventData::Battle { .. } => "battle",
            EventData::Unknown { .. } => "unknown",
            EventData::Connection { .. } => "connection",
        }
    }
}

impl Event {
    /// A connection life-cycle line, stamped with the current time.
    pub fn connection(room_id: u64, data: EventData) -> Event {
        Event {
            room_id,
            msg_id: 0,
            ts_ms: now_ms(),
            user: None,
            data,
            raw: None,
        }
    }

    /// The last line of a run: the connection ended, and why.
    pub fn disconnected(room_id: u64, reason: impl Into<String>) -> Event {
        Event::connection(
            room_id,
            EventData::Connection {
                state: ConnectionState::Disconnected,
                attempt: None,
                delay_ms: None,
                reason: Some(reason.into()),
            },
        )
    }

    pub fn claim(&self) -> Option<&Claim> {
        match &self.data {
            EventData::Chat { claim, .. } => claim.as_ref(),
            _ => None,
        }
    }

    /// True for a control message that ends the live.
    pub fn ends_stream(&self) -> bool {
        matches!(&self.data, EventData::Control { action, .. } if action.ends_stream())
    }

    /// Appends the event as one NDJSON line (with its `\n`). Fixed keys come first in a fixed order,
    /// then the type-specific fields, then `raw`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let mut ts = [0u8; 24];
        out.extend_from_slice(b"{\"v\":1,\"type\":\"");
        out.extend_from_slice(self.data.type_name().as_bytes());
        out.extend_from_slice(b"\",\"ts\":\"");
        out.extend_from_slice(format_rfc3339_ms(self.ts_ms, &mut ts));
        let _ = write!(out, "\",\"room_id\":\"{}\",\"msg_id\":", self.room_id);
        if self.msg_id == 0 {
            out.extend_from_slice(b"null");
        } else {
            let _ = write!(out, "\"{}\"", self.msg_id);
        }
        if let Some(user) = &self.user {
            out.extend_from_slice(b",\"user\":");
            serde_json::to_writer(&mut *out, user).expect("user serialises");
        }
        // The variant serialises as `{...}`: splice its fields into this object.
        let start = out.len();
        serde_json::to_writer(&mut *out, &self.data).expect("event data serialises");
        if out.len() - start > 2 {
            out[start] = b',';
            out.pop();
        } else {
            out.truncate(start);
        }
        if let Some(raw) = &self.raw {
            out.extend_from_slice(b",\"raw\":");
            serde_json::to_writer(&mut *out, raw).expect("raw serialises");
        }
        out.extend_from_slice(b"}\n");
    }

    /// The NDJSON line as a string, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        out.pop();
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_fixed_keys_first_and_ids_as_strings() {
        let event = Event {
            room_id: 7270193599273683745,
            msg_id: 7270204318916594464,
            ts_ms: 1692726385028,
            user: None,
            data: EventData::Like {
                like_count: 15,
                total_like_count: 14470,
            },
            raw: None,
        };
        assert_eq!(
            event.to_json_line(),
            r#"{"v":1,"type":"like","ts":"2023-08-22T17:46:25.028Z","room_id":"7270193599273683745","msg_id":"7270204318916594464","like_count":15,"total_like_count":14470}"#
        );
    }

    #[test]
    fn connection_line_has_null_msg_id_and_omits_absent_fields() {
        let mut event = Event::connection(
            5,
            EventData::Connection {
                state: ConnectionState::Connected,
                attempt: None,
                delay_ms: None,
                reason: None,
            },
        );
        event.ts_ms = 0;
        assert_eq!(
            event.to_json_line(),
            r#"{"v":1,"type":"connection","ts":"1970-01-01T00:00:00.000Z","room_id":"5","msg_id":null,"state":"connected"}"#
        );
    }

    #[test]
    fn every_type_name_is_documented() {
        let unknown = EventData::Unknown { method: "X".into() };
        assert!(EVENT_TYPES.contains(&unknown.type_name()));
    }
}
