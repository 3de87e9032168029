//! Events and lives for the store's tests, built from the public event types directly.

use crate::claims::Claim;
use crate::events::{Event, EventData, EventUser};

use super::{LiveSource, NewLive};

pub const ROOM: u64 = 7_270_193_599_273_683_745;

pub fn live(host: &str) -> NewLive {
    NewLive {
        host: host.to_owned(),
        room_id: ROOM,
        title: Some("Vente du soir".into()),
        source: LiveSource::Watch,
        started_ms: 500,
    }
}

pub fn user(id: u64, handle: &str) -> EventUser {
    EventUser {
        id,
        unique_id: handle.to_owned(),
        nickname: format!("{handle} ✨"),
        avatar_url: Some(format!("https://p16.example/{handle}.webp")),
        follow_role: 0,
        is_moderator: false,
        is_subscriber: false,
        gifter_level: 0,
    }
}

pub fn claim(item: &str, variant: &str, quantity: u32) -> Claim {
    Claim {
        item: Some(item.to_owned()),
        variant: Some(variant.to_owned()),
        quantity,
        raw: format!("jp {item} {variant} x{quantity}"),
    }
}

fn event(msg_id: u64, ts_ms: i64, user: Option<EventUser>, data: EventData) -> Event {
    Event {
        room_id: ROOM,
        msg_id,
        ts_ms,
        user,
        data,
        raw: None,
    }
}

pub fn chat(
    msg_id: u64,
    user: EventUser,
    ts_ms: i64,
    comment: &str,
    claim: Option<Claim>,
) -> Event {
    let data = EventData::Chat {
        comment: comment.to_owned(),
        emotes: Vec::new(),
        claim,
    };
    event(msg_id, ts_ms, Some(user), data)
}

pub fn like(msg_id: u64, user_id: u64, ts_ms: i64) -> Event {
    let data = EventData::Like {
        like_count: 15,
        total_like_count: 1500,
    };
    event(msg_id, ts_ms, Some(self::user(user_id, "liker")), data)
}

pub fn gift(msg_id: u64, user_id: u64, ts_ms: i64, repeat_count: u64, streaking: bool) -> Event {
    let data = EventData::Gift {
        gift_id: 5655,
        gift_name: "Rose".into(),
        gift_type: 1,
        repeat_count,
        repeat_end: !streaking,
        streaking,
        group_id: 1,
        diamond_count: 1,
        total_diamonds: repeat_count,
        gift_image_url: None,
        receiver_user_id: None,
    };
    event(msg_id, ts_ms, Some(user(user_id, "gifter")), data)
}
