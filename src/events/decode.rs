//! Turns one webcast message (method name + protobuf payload) into a typed `Event`, applying the
//! classic connector's rules for users, gifts and social messages (PROTOCOL.md §3–§4).

use prost::Message;
use serde::Serialize;

use super::*;
use crate::claims::ClaimParser;
use crate::protocol::messages as pb;

/// Choices that change what a decoded event carries.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// Attach the decoded protobuf as JSON under `raw`.
    pub include_raw: bool,
    pub claims: ClaimParser,
}

/// Decodes one message of a fetch result. `fallback_ts` (the batch's server time) stamps messages that
/// carry no create time. Unknown methods become `unknown` events; only a payload that is not valid
/// protobuf for its method is an error.
pub fn decode_message(
    msg: &pb::BaseMessage,
    fallback_ts: i64,
    opts: &DecodeOptions,
) -> Result<Event, prost::DecodeError> {
    let payload = msg.payload.clone();
    let ctx = Ctx {
        base: msg,
        fallback_ts,
        include_raw: opts.include_raw,
    };
    Ok(match msg.method.as_str() {
        "WebcastChatMessage" => {
            let m = pb::ChatMessage::decode(payload)?;
            let comment = m.content.clone();
            let claim = opts.claims.parse(&comment);
            let emotes = m
                .emotes
                .iter()
                .map(|e| EmoteRef {
                    emote_id: e
                        .emote
                        .as_ref()
                        .map(|x| x.emote_id.clone())
                        .unwrap_or_default(),
                    image_url: e.emote.as_ref().and_then(|x| first_url(x.image.as_ref())),
                    index: e.index,
                })
                .collect();
            let user = event_user(m.user.as_ref(), m.user_identity.as_ref());
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Chat {
                    comment,
                    emotes,
                    claim,
                },
            )
        }
        "WebcastGiftMessage" => {
            let m = pb::GiftMessage::decode(payload)?;
            let gift = m.gift.clone().unwrap_or_default();
            let gift_type = gift.r#type;
            let repeat_end = m.repeat_end != 0;
            let diamond_count = gift.diamond_count;
            let repeat_count = m.repeat_count.max(1);
            let receiver = m
                .to_user
                .as_ref()
                .map(|u| u.id)
                .filter(|&id| id != 0)
                .or_else(|| {
                    m.monitor_info
                        .as_ref()
                        .map(|i| i.to_user_id)
                        .filter(|&id| id != 0)
                });
            let user = event_user(m.user.as_ref(), m.user_identity.as_ref());
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Gift {
                    gift_id: if m.gift_id != 0 { m.gift_id } else { gift.id },
                    gift_name: gift.name,
                    gift_type,
                    repeat_count,
                    repeat_end,
                    streaking: gift_type == 1 && !repeat_end,
                    group_id: m.group_id,
                    diamond_count,
                    total_diamonds: diamond_count.saturating_mul(repeat_count),
                    gift_image_url: first_url(gift.image.as_ref()),
                    receiver_user_id: receiver,
                },
            )
        }
        "WebcastLikeMessage" => {
            let m = pb::LikeMessage::decode(payload)?;
            let user = event_user(m.user.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Like {
                    like_count: m.count,
                    total_like_count: m.total,
                },
            )
        }
        "WebcastMemberMessage" => {
            let m = pb::MemberMessage::decode(payload)?;
            let user = event_user(m.user.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Member {
                    action_id: m.action,
                    member_count: m.member_count,
                },
            )
        }
        "WebcastSocialMessage" => {
            let m = pb::SocialMessage::decode(payload)?;
            let key = display_key(m.common.as_ref());
            let social_type = if key.contains("follow") {
                SocialKind::Follow
            } else if key.contains("share") {
                SocialKind::Share
            } else {
                SocialKind::Other
            };
            let user = event_user(m.user.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Social {
                    social_type,
                    action_id: m.action,
                    share_count: m.share_count,
                    display_key: key.to_owned(),
                },
            )
        }
        "WebcastRoomUserSeqMessage" => {
            let m = pb::RoomUserSeqMessage::decode(payload)?;
            let top_viewers = m
                .ranks
                .iter()
                .map(|c| TopViewer {
                    rank: c.rank,
                    coin_count: c.score,
                    user: event_user(c.user.as_ref(), None),
                })
                .collect();
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::RoomUser {
                    viewer_count: m.total,
                    total_viewers: m.total_user,
                    top_viewers,
                },
            )
        }
        "WebcastSubNotifyMessage" => {
            let m = pb::SubNotifyMessage::decode(payload)?;
            let user = event_user(m.user.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Subscribe {
                    sub_month: m.sub_month,
                    subscribe_type: m.subscribe_type,
                    old_subscribe_status: m.old_subscribe_status,
                    subscribing_status: m.subscribing_status,
                },
            )
        }
        "WebcastQuestionNewMessage" => {
            let m = pb::QuestionNewMessage::decode(payload)?;
            let q = m.data.clone().unwrap_or_default();
            let user = event_user(q.user.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Question {
                    question_id: q.question_id,
                    question_text: q.content,
                },
            )
        }
        "WebcastEmoteChatMessage" => {
            let m = pb::EmoteChatMessage::decode(payload)?;
            let first = m.emote_list.first();
            let user = event_user(m.user.as_ref(), m.user_identity.as_ref());
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::Emote {
                    emote_id: first.map(|e| e.emote_id.clone()).unwrap_or_default(),
                    emote_image_url: first.and_then(|e| first_url(e.image.as_ref())),
                },
            )
        }
        "WebcastEnvelopeMessage" => {
            let m = pb::EnvelopeMessage::decode(payload)?;
            let info = m.envelope_info.clone().unwrap_or_default();
            let super_fan_box = info.business_type == 19
                || display_key(m.common.as_ref()).contains("ttlive_superfanbox");
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::Envelope {
                    envelope_id: info.envelope_id,
                    diamond_count: info.diamond_count,
                    people_count: info.people_count,
                    unpack_at: info.unpack_at,
                    business_type: info.business_type,
                    super_fan_box,
                    sender_name: info.send_user_name,
                },
            )
        }
        "WebcastControlMessage" => {
            let m = pb::ControlMessage::decode(payload)?;
            let action = match m.action {
                1 => ControlAction::Pause,
                2 => ControlAction::Unpause,
                3 => ControlAction::StreamEnd,
                4 => ControlAction::StreamSuspended,
                _ => ControlAction::Other,
            };
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::Control {
                    action,
                    action_id: m.action,
                    tips: m.tips.clone(),
                },
            )
        }
        "WebcastLiveIntroMessage" => {
            let m = pb::LiveIntroMessage::decode(payload)?;
            let user = event_user(m.user.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                user,
                EventData::LiveIntro {
                    intro_id: m.id,
                    description: m.content.clone(),
                },
            )
        }
        "WebcastImDeleteMessage" => {
            let m = pb::ImDeleteMessage::decode(payload)?;
            let ids = |v: &[u64]| v.iter().map(u64::to_string).collect();
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::ImDelete {
                    delete_msg_ids: ids(&m.delete_msg_ids),
                    delete_user_ids: ids(&m.delete_user_ids),
                },
            )
        }
        "WebcastRoomPinMessage" => {
            let m = pb::RoomPinMessage::decode(payload)?;
            let chat = m.chat_message.as_ref();
            let pinned_user = chat.and_then(|c| event_user(c.user.as_ref(), None));
            let operator = event_user(m.operator.as_ref(), None);
            ctx.event(
                &m,
                m.common.as_ref(),
                operator,
                EventData::RoomPin {
                    pinned: m.action != 2,
                    pinned_method: m.method.clone(),
                    pinned_msg_id: m.pin_msg_id,
                    pinned_comment: chat.map(|c| c.content.clone()),
                    pinned_user,
                    display_duration: m.display_duration,
                },
            )
        }
        "WebcastCaptionMessage" => {
            let m = pb::CaptionMessage::decode(payload)?;
            let captions = m
                .content
                .iter()
                .map(|c| CaptionLine {
                    lang: c.lang.clone(),
                    text: c.content.clone(),
                })
                .collect();
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::Caption {
                    sentence_id: m.sentence_id,
                    definite: m.definite,
                    captions,
                },
            )
        }
        "WebcastLinkMicBattle" => {
            let m = pb::LinkMicBattle::decode(payload)?;
            let hosts = m
                .anchors_info
                .iter()
                .filter_map(|a| {
                    let wrapper = a.user.as_ref()?;
                    event_user(wrapper.user.as_ref(), None)
                })
                .collect();
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::Battle {
                    battle_event: "battle",
                    battle_id: m.battle_id,
                    action_id: m.action,
                    scores: Vec::new(),
                    hosts,
                },
            )
        }
        "WebcastLinkMicArmies" => {
            let m = pb::LinkMicArmies::decode(payload)?;
            let scores = m
                .armies
                .iter()
                .map(|a| BattleScore {
                    host_user_id: a.host_user_id,
                    points: a.groups.iter().map(|g| g.points).sum(),
                })
                .collect();
            ctx.event(
                &m,
                m.common.as_ref(),
                None,
                EventData::Battle {
                    battle_event: "armies",
                    battle_id: m.battle_id,
                    action_id: m.trigger_reason,
                    scores,
                    hosts: Vec::new(),
                },
            )
        }
        other => {
            let m = pb::CommonOnly::decode(payload)?;
            let mut event = ctx.event(
                &NoRaw,
                m.common.as_ref(),
                None,
                EventData::Unknown {
                    method: other.to_owned(),
                },
            );
            if ctx.include_raw {
                event.raw = Some(serde_json::json!({
                    "common": m.common,
                    "payload_base64": crate::base64(&msg.payload),
                }));
            }
            event
        }
    })
}

struct Ctx<'a> {
    base: &'a pb::BaseMessage,
    fallback_ts: i64,
    include_raw: bool,
}

/// Placeholder for messages whose raw form is built by hand.
#[derive(Serialize)]
struct NoRaw;

impl Ctx<'_> {
    fn event<M: Serialize>(
        &self,
        message: &M,
        common: Option<&pb::Common>,
        user: Option<EventUser>,
        data: EventData,
    ) -> Event {
        let (msg_id, room_id, create_time) = common
            .map(|c| (c.msg_id, c.room_id, c.create_time))
            .unwrap_or_default();
        Event {
            room_id,
            msg_id: if msg_id != 0 {
                msg_id
            } else {
                self.base.msg_id
            },
            ts_ms: if create_time > 0 {
                create_time
            } else {
                self.fallback_ts
            },
            user,
            data,
            raw: self
                .include_raw
                .then(|| serde_json::to_value(message).unwrap_or(serde_json::Value::Null)),
        }
    }
}

fn display_key(common: Option<&pb::Common>) -> &str {
    common
        .and_then(|c| c.display_text.as_ref())
        .map(|t| t.key.as_str())
        .unwrap_or("")
}

fn first_url(image: Option<&pb::Image>) -> Option<String> {
    image.and_then(|i| i.url_list.first().cloned())
}

/// The classic client's avatar choice: a 100x100 webp, else a 100x100 jpeg, else the first URL that is
/// not a "shrink" variant, else the first.
fn preferred_avatar(user: &pb::User) -> Option<String> {
    let image = [&user.avatar_thumb, &user.avatar_medium, &user.avatar_large]
        .into_iter()
        .flatten()
        .find(|i| !i.url_list.is_empty())?;
    let urls = &image.url_list;
    urls.iter()
        .find(|u| u.contains("100x100") && u.contains(".webp"))
        .or_else(|| {
            urls.iter()
                .find(|u| u.contains("100x100") && u.contains(".jpeg"))
        })
        .or_else(|| urls.iter().find(|u| !u.contains("shrink")))
        .or_else(|| urls.first())
        .cloned()
}

/// Builds the user block; `None` when the message has no user.
pub(super) fn event_user(
    user: Option<&pb::User>,
    identity: Option<&pb::UserIdentity>,
) -> Option<EventUser> {
    let user = user?;
    let id = if user.id != 0 {
        user.id
    } else {
        user.id_str.parse().unwrap_or(0)
    };
    let mut is_moderator = identity.is_some_and(|i| i.is_moderator_of_anchor);
    let mut is_subscriber = identity.is_some_and(|i| i.is_subscriber_of_anchor);
    let mut gifter_level = 0;
    for badge in &user.badge_list {
        match badge.scene_type {
            1 => is_moderator = true,
            4 | 7 => is_subscriber = true,
            8 if gifter_level == 0 => {
                gifter_level = badge
                    .privilege_log_extra
                    .as_ref()
                    .and_then(|p| p.level.parse().ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
        if badge
            .text
            .as_ref()
            .is_some_and(|t| t.key.contains("moderator"))
        {
            is_moderator = true;
        }
        if badge
            .image
            .as_ref()
            .and_then(|i| i.image.as_ref())
            .is_some_and(|i| i.url_list.iter().any(|u| u.contains("/sub_")))
        {
            is_subscriber = true;
        }
    }
    Some(EventUser {
        id,
        unique_id: user.display_id.clone(),
        nickname: user.nickname.clone(),
        avatar_url: preferred_avatar(user),
        follow_role: user.follow_info.as_ref().map_or(0, |f| f.follow_status),
        is_moderator,
        is_subscriber,
        gifter_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_method_keeps_its_name_and_common_fields() {
        let payload = pb::CommonOnly {
            common: Some(pb::Common {
                msg_id: 42,
                room_id: 7,
                create_time: 1000,
                ..Default::default()
            }),
        };
        let msg = pb::BaseMessage {
            method: "WebcastRankUpdateMessage".into(),
            payload: payload.encode_to_vec().into(),
            msg_id: 42,
        };
        let event = decode_message(&msg, 5, &DecodeOptions::default()).unwrap();
        assert_eq!(event.msg_id, 42);
        assert_eq!(event.room_id, 7);
        assert_eq!(event.ts_ms, 1000);
        assert_eq!(
            event.data,
            EventData::Unknown {
                method: "WebcastRankUpdateMessage".into()
            }
        );
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        let msg = pb::BaseMessage {
            method: "WebcastChatMessage".into(),
            payload: bytes::Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff]),
            msg_id: 1,
        };
        assert!(decode_message(&msg, 0, &DecodeOptions::default()).is_err());
    }
}
