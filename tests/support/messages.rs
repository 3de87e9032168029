//! Webcast messages for the mock to push, built with tiklive's own prost structs, plus the real
//! captured payloads of `../shared/captures` so that real TikTok bytes flow through the whole client.

use std::path::PathBuf;

use prost::Message;
use tiklive::protocol::{
    BaseMessage, ChatMessage, Common, CommonOnly, ControlMessage, FetchResult, Gift, GiftMessage,
    Image, LikeMessage, MemberMessage, PushFrame, RoomUserSeqMessage, SocialMessage, Text, User,
};

/// The room every scenario streams, 19 digits like TikTok's.
pub const ROOM_ID: u64 = 7_400_123_456_789_012_345;
/// A second room, used by the offline host.
pub const OFFLINE_ROOM_ID: u64 = 7_400_999_888_777_666_555;

/// Bytes of a file in `../shared/captures`.
pub fn capture_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/captures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read capture {}: {e}", path.display()))
}

/// A captured event payload wrapped as TikTok wraps it: method name, payload, and the message id of
/// its `common` block.
pub fn capture(name: &str, method: &str) -> BaseMessage {
    let payload = capture_bytes(name);
    let common = CommonOnly::decode(payload.as_slice())
        .unwrap_or_else(|e| panic!("capture {name} is not a webcast message: {e}"))
        .common
        .unwrap_or_else(|| panic!("capture {name} has no common block"));
    BaseMessage {
        method: method.into(),
        payload: payload.into(),
        msg_id: common.msg_id,
    }
}

/// The `need_ack` state, log id and internal_ext of a whole captured push frame, to check its ack.
pub fn capture_frame_ack(frame: &[u8]) -> Option<(u64, String)> {
    let frame = PushFrame::decode(frame).ok()?;
    if frame.payload_type != "msg" {
        return None;
    }
    let payload = tiklive::protocol::frame_payload(&frame).ok()?;
    let result = FetchResult::decode(payload).ok()?;
    result
        .need_ack
        .then_some((frame.log_id, result.internal_ext))
}

/// The viewer who claims things in most scenarios.
pub fn buyer() -> User {
    viewer(6_900_000_000_000_000_001, "Camille 🛍️", "camille.shop")
}

/// A second viewer, a fan who chats, likes and sends roses.
pub fn fan() -> User {
    viewer(6_900_000_000_000_000_002, "Léa", "lea_b")
}

pub fn viewer(id: u64, nickname: &str, unique_id: &str) -> User {
    User {
        id,
        nickname: nickname.into(),
        display_id: unique_id.into(),
        id_str: id.to_string(),
        ..Default::default()
    }
}

/// The Rose: type 1 (streakable), one diamond.
pub fn rose() -> Gift {
    Gift {
        id: 5655,
        name: "Rose".into(),
        r#type: 1,
        diamond_count: 1,
        combo: true,
        describe: "Sent Rose".into(),
        image: Some(Image {
            url_list: vec![
                "https://p16-webcast.tiktokcdn.com/img/maliva/webcast-va/rose.png".into(),
            ],
            uri: "webcast-va/rose".into(),
        }),
    }
}

/// A gift that cannot streak (type 2).
pub fn lion() -> Gift {
    Gift {
        id: 6369,
        name: "Lion".into(),
        r#type: 2,
        diamond_count: 29_999,
        ..Default::default()
    }
}

/// Allocates message ids and creation times for synthetic messages of one room.
pub struct Messages {
    pub room_id: u64,
    next: u64,
}

impl Messages {
    pub fn new(room_id: u64) -> Self {
        Messages { room_id, next: 0 }
    }

    fn common(&mut self, method: &str, display: Option<(&str, &str)>) -> Common {
        self.next += 1;
        Common {
            method: method.into(),
            msg_id: 7_400_000_000_000_000_000 + self.next,
            room_id: self.room_id,
            create_time: 1_767_225_600_000 + self.next as i64 * 250,
            describe: String::new(),
            display_text: display.map(|(key, pattern)| Text {
                key: key.into(),
                default_pattern: pattern.into(),
            }),
        }
    }

    fn wrap(method: &str, common: &Common, payload: Vec<u8>) -> BaseMessage {
        BaseMessage {
            method: method.into(),
            payload: payload.into(),
            msg_id: common.msg_id,
        }
    }

    pub fn chat(&mut self, user: &User, text: &str) -> BaseMessage {
        let common = self.common("WebcastChatMessage", None);
        let m = ChatMessage {
            common: Some(common.clone()),
            user: Some(user.clone()),
            content: text.into(),
            ..Default::default()
        };
        Self::wrap("WebcastChatMessage", &common, m.encode_to_vec())
    }

    pub fn gift(
        &mut self,
        user: &User,
        gift: &Gift,
        repeat_count: u64,
        repeat_end: bool,
        group_id: u64,
    ) -> BaseMessage {
        let common = self.common(
            "WebcastGiftMessage",
            Some((
                "webcast_aweme_gift_send_message",
                "{0:user} sent {1:gift} {2:string}",
            )),
        );
        let m = GiftMessage {
            common: Some(common.clone()),
            gift_id: gift.id,
            repeat_count,
            combo_count: repeat_count,
            group_count: 1,
            repeat_end: u64::from(repeat_end),
            group_id,
            user: Some(user.clone()),
            gift: Some(gift.clone()),
            send_type: 1,
            ..Default::default()
        };
        Self::wrap("WebcastGiftMessage", &common, m.encode_to_vec())
    }

    pub fn like(&mut self, user: &User, count: u64, total: u64) -> BaseMessage {
        let common = self.common(
            "WebcastLikeMessage",
            Some(("pm_mt_msg_viewer", "{0:user} liked the LIVE")),
        );
        let m = LikeMessage {
            common: Some(common.clone()),
            count,
            total,
            user: Some(user.clone()),
        };
        Self::wrap("WebcastLikeMessage", &common, m.encode_to_vec())
    }

    pub fn member(&mut self, user: &User, member_count: u64) -> BaseMessage {
        let common = self.common(
            "WebcastMemberMessage",
            Some(("live_room_enter_toast", "{0:user} joined")),
        );
        let m = MemberMessage {
            common: Some(common.clone()),
            user: Some(user.clone()),
            member_count,
            action: 1,
            client_enter_source: "homepage_hot-live_cell".into(),
            client_enter_type: "click".into(),
        };
        Self::wrap("WebcastMemberMessage", &common, m.encode_to_vec())
    }

    /// A social message; TikTok tells follows from shares by the display key only.
    pub fn social(&mut self, user: &User, key: &str, action: u64, share_count: u64) -> BaseMessage {
        let common = self.common(
            "WebcastSocialMessage",
            Some((key, "{0:user} did something")),
        );
        let m = SocialMessage {
            common: Some(common.clone()),
            user: Some(user.clone()),
            action,
            share_count,
            ..Default::default()
        };
        Self::wrap("WebcastSocialMessage", &common, m.encode_to_vec())
    }

    pub fn room_user(&mut self, viewers: u64, total_viewers: u64) -> BaseMessage {
        let common = self.common("WebcastRoomUserSeqMessage", None);
        let m = RoomUserSeqMessage {
            common: Some(common.clone()),
            ranks: Vec::new(),
            total: viewers,
            total_user: total_viewers,
        };
        Self::wrap("WebcastRoomUserSeqMessage", &common, m.encode_to_vec())
    }

    /// Action 3 ends the live (§3.10).
    pub fn control(&mut self, action: u64) -> BaseMessage {
        let common = self.common("WebcastControlMessage", None);
        let m = ControlMessage {
            common: Some(common.clone()),
            action,
            tips: if action == 3 {
                "LIVE has ended".into()
            } else {
                String::new()
            },
        };
        Self::wrap("WebcastControlMessage", &common, m.encode_to_vec())
    }

    /// A message of a method tiklive does not model: only its `common` block is readable.
    pub fn unknown(&mut self, method: &str) -> BaseMessage {
        let common = self.common(method, None);
        let m = CommonOnly {
            common: Some(common.clone()),
        };
        Self::wrap(method, &common, m.encode_to_vec())
    }

    /// A message whose payload is not valid protobuf for its method.
    pub fn undecodable(&mut self, method: &str) -> BaseMessage {
        let common = self.common(method, None);
        BaseMessage {
            method: method.into(),
            payload: vec![0x0a, 0xff, 0xff, 0xff, 0x7f, 0x01].into(),
            msg_id: common.msg_id,
        }
    }
}
