//! Protobuf structs for the webcast messages we decode, written by hand with prost derives (field numbers
//! from PROTOCOL.md §2–§3), so that no protoc is needed at build time. Only the fields tiklive uses are
//! modelled: prost skips the rest cheaply, which keeps decoding fast on busy lives.

use bytes::Bytes;
use serde::Serialize;

/// Serialises 64-bit ids as decimal strings: JSON numbers above 2^53 lose precision in jq and JavaScript.
pub(crate) fn id_str<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ids_str<S: serde::Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|id| id.to_string()))
}

// ---------------------------------------------------------------------------------------------------
// Framing (§2)

/// Every WebSocket binary message, in both directions (§2.1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushFrame {
    #[prost(uint64, tag = "1")]
    pub seq_id: u64,
    #[prost(uint64, tag = "2")]
    pub log_id: u64,
    #[prost(uint64, tag = "3")]
    pub service: u64,
    #[prost(uint64, tag = "4")]
    pub method: u64,
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<HeaderEntry>,
    #[prost(string, tag = "6")]
    pub payload_encoding: String,
    #[prost(string, tag = "7")]
    pub payload_type: String,
    #[prost(bytes = "bytes", tag = "8")]
    pub payload: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The batch of messages inside a `msg` frame, and the answer of the signing service (§2.4).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchResult {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<BaseMessage>,
    #[prost(string, tag = "2")]
    pub cursor: String,
    #[prost(uint64, tag = "3")]
    pub fetch_interval: u64,
    #[prost(uint64, tag = "4")]
    pub now: u64,
    #[prost(string, tag = "5")]
    pub internal_ext: String,
    #[prost(uint64, tag = "6")]
    pub fetch_type: u64,
    #[prost(message, repeated, tag = "7")]
    pub route_params: Vec<HeaderEntry>,
    #[prost(uint64, tag = "8")]
    pub heartbeat_duration: u64,
    #[prost(bool, tag = "9")]
    pub need_ack: bool,
    #[prost(string, tag = "10")]
    pub push_server: String,
    #[prost(bool, tag = "11")]
    pub is_first: bool,
}

/// Per-message envelope: the method name selects the schema of the payload (§2.5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BaseMessage {
    #[prost(string, tag = "1")]
    pub method: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub payload: Bytes,
    #[prost(uint64, tag = "3")]
    pub msg_id: u64,
}

/// Client heartbeat payload (§2.7).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeartBeat {
    #[prost(uint64, tag = "1")]
    pub room_id: u64,
    #[prost(uint64, tag = "2")]
    pub send_packet_seq_id: u64,
}

/// Client `im_enter_room` payload (§2.8).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImEnterRoom {
    #[prost(uint64, tag = "1")]
    pub room_id: u64,
    #[prost(string, tag = "2")]
    pub room_tag: String,
    #[prost(string, tag = "3")]
    pub live_region: String,
    #[prost(uint64, tag = "4")]
    pub live_id: u64,
    #[prost(string, tag = "5")]
    pub identity: String,
    #[prost(string, tag = "6")]
    pub cursor: String,
    #[prost(uint64, tag = "7")]
    pub account_type: u64,
    #[prost(uint64, tag = "8")]
    pub enter_unique_id: u64,
    #[prost(string, tag = "9")]
    pub filter_welcome_msg: String,
    #[prost(bool, tag = "10")]
    pub is_anchor_continue_keep_msg: bool,
}

// ---------------------------------------------------------------------------------------------------
// Shared parts of event messages (§3.1–§3.2)

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Common {
    #[prost(string, tag = "1")]
    pub method: String,
    #[prost(uint64, tag = "2")]
    #[serde(serialize_with = "id_str")]
    pub msg_id: u64,
    #[prost(uint64, tag = "3")]
    #[serde(serialize_with = "id_str")]
    pub room_id: u64,
    #[prost(int64, tag = "4")]
    pub create_time: i64,
    #[prost(string, tag = "7")]
    pub describe: String,
    #[prost(message, optional, tag = "8")]
    pub display_text: Option<Text>,
}

/// Only `common`: lets us read the id and time of a message whose method we do not model.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CommonOnly {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Text {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub default_pattern: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct User {
    #[prost(uint64, tag = "1")]
    #[serde(serialize_with = "id_str")]
    pub id: u64,
    #[prost(string, tag = "3")]
    pub nickname: String,
    #[prost(message, optional, tag = "9")]
    pub avatar_thumb: Option<Image>,
    #[prost(message, optional, tag = "10")]
    pub avatar_medium: Option<Image>,
    #[prost(message, optional, tag = "11")]
    pub avatar_large: Option<Image>,
    #[prost(message, optional, tag = "22")]
    pub follow_info: Option<FollowInfo>,
    #[prost(string, tag = "38")]
    pub display_id: String,
    #[prost(string, tag = "46")]
    pub sec_uid: String,
    #[prost(message, repeated, tag = "64")]
    pub badge_list: Vec<Badge>,
    #[prost(string, tag = "1028")]
    pub id_str: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FollowInfo {
    #[prost(uint64, tag = "1")]
    pub following_count: u64,
    #[prost(uint64, tag = "2")]
    pub follower_count: u64,
    #[prost(uint64, tag = "3")]
    pub follow_status: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Image {
    #[prost(string, repeated, tag = "1")]
    pub url_list: Vec<String>,
    #[prost(string, tag = "2")]
    pub uri: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Badge {
    #[prost(uint64, tag = "1")]
    pub display_type: u64,
    #[prost(uint64, tag = "3")]
    pub scene_type: u64,
    #[prost(message, optional, tag = "12")]
    pub privilege_log_extra: Option<PrivilegeLogExtra>,
    #[prost(message, optional, tag = "20")]
    pub image: Option<ImageBadge>,
    #[prost(message, optional, tag = "21")]
    pub text: Option<TextBadge>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PrivilegeLogExtra {
    #[prost(string, tag = "2")]
    pub privilege_id: String,
    #[prost(string, tag = "5")]
    pub level: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ImageBadge {
    #[prost(message, optional, tag = "2")]
    pub image: Option<Image>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TextBadge {
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, tag = "3")]
    pub default_pattern: String,
}

/// Field 18 of chat, 32 of gift, 5 of emote: the cleanest moderator and subscriber signal (§3.2).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct UserIdentity {
    #[prost(bool, tag = "1")]
    pub is_gift_giver_of_anchor: bool,
    #[prost(bool, tag = "2")]
    pub is_subscriber_of_anchor: bool,
    #[prost(bool, tag = "3")]
    pub is_mutual_following_with_anchor: bool,
    #[prost(bool, tag = "4")]
    pub is_follower_of_anchor: bool,
    #[prost(bool, tag = "5")]
    pub is_moderator_of_anchor: bool,
    #[prost(bool, tag = "6")]
    pub is_anchor: bool,
}

// ---------------------------------------------------------------------------------------------------
// Event messages (§3.3–§3.15)

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ChatMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub user: Option<User>,
    #[prost(string, tag = "3")]
    pub content: String,
    #[prost(message, repeated, tag = "13")]
    pub emotes: Vec<EmoteWithIndex>,
    #[prost(string, tag = "14")]
    pub content_language: String,
    #[prost(message, optional, tag = "18")]
    pub user_identity: Option<UserIdentity>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EmoteWithIndex {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(message, optional, tag = "2")]
    pub emote: Option<Emote>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Emote {
    #[prost(string, tag = "1")]
    pub emote_id: String,
    #[prost(message, optional, tag = "2")]
    pub image: Option<Image>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EmoteChatMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub user: Option<User>,
    #[prost(message, repeated, tag = "3")]
    pub emote_list: Vec<Emote>,
    #[prost(message, optional, tag = "5")]
    pub user_identity: Option<UserIdentity>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct GiftMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    pub gift_id: u64,
    #[prost(uint64, tag = "3")]
    pub fan_ticket_count: u64,
    #[prost(uint64, tag = "4")]
    pub group_count: u64,
    #[prost(uint64, tag = "5")]
    pub repeat_count: u64,
    #[prost(uint64, tag = "6")]
    pub combo_count: u64,
    #[prost(message, optional, tag = "7")]
    pub user: Option<User>,
    #[prost(message, optional, tag = "8")]
    pub to_user: Option<User>,
    #[prost(uint64, tag = "9")]
    pub repeat_end: u64,
    #[prost(uint64, tag = "11")]
    #[serde(serialize_with = "id_str")]
    pub group_id: u64,
    #[prost(message, optional, tag = "15")]
    pub gift: Option<Gift>,
    #[prost(string, tag = "16")]
    pub log_id: String,
    #[prost(uint64, tag = "17")]
    pub send_type: u64,
    #[prost(message, optional, tag = "23")]
    pub monitor_info: Option<GiftMonitorInfo>,
    #[prost(message, optional, tag = "32")]
    pub user_identity: Option<UserIdentity>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Gift {
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
    #[prost(string, tag = "2")]
    pub describe: String,
    #[prost(uint64, tag = "5")]
    pub id: u64,
    #[prost(bool, tag = "10")]
    pub combo: bool,
    #[prost(uint64, tag = "11")]
    pub r#type: u64,
    #[prost(uint64, tag = "12")]
    pub diamond_count: u64,
    #[prost(string, tag = "16")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct GiftMonitorInfo {
    #[prost(uint64, tag = "1")]
    #[serde(serialize_with = "id_str")]
    pub anchor_id: u64,
    #[prost(uint64, tag = "6")]
    pub send_gift_send_message_success_ms: u64,
    #[prost(uint64, tag = "8")]
    #[serde(serialize_with = "id_str")]
    pub to_user_id: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LikeMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    pub count: u64,
    #[prost(uint64, tag = "3")]
    pub total: u64,
    #[prost(message, optional, tag = "5")]
    pub user: Option<User>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MemberMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub user: Option<User>,
    #[prost(uint64, tag = "3")]
    pub member_count: u64,
    #[prost(uint64, tag = "10")]
    pub action: u64,
    #[prost(string, tag = "19")]
    pub client_enter_source: String,
    #[prost(string, tag = "20")]
    pub client_enter_type: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SocialMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub user: Option<User>,
    #[prost(uint64, tag = "3")]
    pub share_type: u64,
    #[prost(uint64, tag = "4")]
    pub action: u64,
    #[prost(string, tag = "5")]
    pub share_target: String,
    #[prost(uint64, tag = "6")]
    pub follow_count: u64,
    #[prost(uint64, tag = "8")]
    pub share_count: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RoomUserSeqMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, repeated, tag = "2")]
    pub ranks: Vec<Contributor>,
    #[prost(uint64, tag = "3")]
    pub total: u64,
    #[prost(uint64, tag = "7")]
    pub total_user: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Contributor {
    #[prost(uint64, tag = "1")]
    pub score: u64,
    #[prost(message, optional, tag = "2")]
    pub user: Option<User>,
    #[prost(uint64, tag = "3")]
    pub rank: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SubNotifyMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub user: Option<User>,
    #[prost(uint64, tag = "4")]
    pub sub_month: u64,
    #[prost(uint64, tag = "5")]
    pub subscribe_type: u64,
    #[prost(uint64, tag = "6")]
    pub old_subscribe_status: u64,
    #[prost(uint64, tag = "8")]
    pub subscribing_status: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ControlMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    pub action: u64,
    #[prost(string, tag = "3")]
    pub tips: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct QuestionNewMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub data: Option<Question>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Question {
    #[prost(uint64, tag = "1")]
    #[serde(serialize_with = "id_str")]
    pub question_id: u64,
    #[prost(string, tag = "2")]
    pub content: String,
    #[prost(message, optional, tag = "5")]
    pub user: Option<User>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EnvelopeMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub envelope_info: Option<EnvelopeInfo>,
    #[prost(uint64, tag = "3")]
    pub display: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EnvelopeInfo {
    #[prost(string, tag = "1")]
    pub envelope_id: String,
    #[prost(uint64, tag = "2")]
    pub business_type: u64,
    #[prost(string, tag = "4")]
    pub send_user_name: String,
    #[prost(uint64, tag = "5")]
    pub diamond_count: u64,
    #[prost(uint64, tag = "6")]
    pub people_count: u64,
    #[prost(uint64, tag = "7")]
    pub unpack_at: u64,
    #[prost(string, tag = "8")]
    pub send_user_id: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LiveIntroMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    #[serde(serialize_with = "id_str")]
    pub id: u64,
    #[prost(string, tag = "4")]
    pub content: String,
    #[prost(message, optional, tag = "5")]
    pub user: Option<User>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ImDeleteMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, repeated, tag = "2")]
    #[serde(serialize_with = "ids_str")]
    pub delete_msg_ids: Vec<u64>,
    #[prost(uint64, repeated, tag = "3")]
    #[serde(serialize_with = "ids_str")]
    pub delete_user_ids: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RoomPinMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(message, optional, tag = "2")]
    pub chat_message: Option<ChatMessage>,
    #[prost(string, tag = "30")]
    pub method: String,
    #[prost(int64, tag = "31")]
    pub pin_time: i64,
    #[prost(message, optional, tag = "32")]
    pub operator: Option<User>,
    #[prost(uint64, tag = "33")]
    pub action: u64,
    #[prost(int64, tag = "34")]
    pub display_duration: i64,
    #[prost(uint64, tag = "35")]
    #[serde(serialize_with = "id_str")]
    pub pin_msg_id: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CaptionMessage {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    pub timestamp_ms: u64,
    #[prost(uint64, tag = "3")]
    pub duration_ms: u64,
    #[prost(message, repeated, tag = "4")]
    pub content: Vec<CaptionContent>,
    #[prost(uint64, tag = "5")]
    #[serde(serialize_with = "id_str")]
    pub sentence_id: u64,
    #[prost(uint64, tag = "6")]
    pub sequence_id: u64,
    #[prost(bool, tag = "7")]
    pub definite: bool,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CaptionContent {
    #[prost(string, tag = "1")]
    pub lang: String,
    #[prost(string, tag = "2")]
    pub content: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LinkMicBattle {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    #[serde(serialize_with = "id_str")]
    pub battle_id: u64,
    #[prost(uint64, tag = "4")]
    pub action: u64,
    #[prost(message, repeated, tag = "10")]
    pub anchors_info: Vec<BattleAnchor>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct BattleAnchor {
    #[prost(message, optional, tag = "1")]
    pub user: Option<BattleUserWrapper>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct BattleUserWrapper {
    #[prost(message, optional, tag = "1")]
    pub user: Option<User>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LinkMicArmies {
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    #[prost(uint64, tag = "2")]
    #[serde(serialize_with = "id_str")]
    pub battle_id: u64,
    #[prost(message, repeated, tag = "3")]
    pub armies: Vec<ArmiesEntry>,
    #[prost(uint64, tag = "7")]
    pub trigger_reason: u64,
}

/// One entry of `LinkMicArmies.armies` (PROTO1 `battleItems`): a host and the groups scoring for them.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ArmiesEntry {
    #[prost(uint64, tag = "1")]
    #[serde(serialize_with = "id_str")]
    pub host_user_id: u64,
    #[prost(message, repeated, tag = "2")]
    pub groups: Vec<ArmyGroup>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ArmyGroup {
    #[prost(message, repeated, tag = "1")]
    pub users: Vec<User>,
    #[prost(int64, tag = "2")]
    pub points: i64,
}
