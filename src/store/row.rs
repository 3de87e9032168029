//! The one mapping from a typed [`Event`] to what the database stores about it: the columns of its
//! `events` row (with the NDJSON line itself as `json`), its buyer and its claim, or the update of the
//! `lives` row for a connection line. Built on the producer's thread, so that serialising runs beside
//! the writer's SQLite work rather than in it.

use crate::claims::Claim;
use crate::events::{ConnectionState, Event, EventData};

use super::{LiveId, sql_count, sql_id};

/// What one event does to the database.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Op {
    /// Boxed: the channel's slots then stay small, whichever command they hold.
    Event(Box<EventRow>),
    /// From a connection line (which is not an event row), `end_live` or `set_live_title`.
    Live {
        live: LiveId,
        /// Fills in `lives.room_id` when it is still 0.
        room_id: Option<i64>,
        ended_ms: Option<i64>,
        /// Replaces the title; `None` keeps it.
        title: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventRow {
    pub live: LiveId,
    pub room_id: i64,
    pub msg_id: i64,
    pub kind: &'static str,
    pub ts: i64,
    pub user: Option<UserRow>,
    pub data: DataColumns,
    pub json: String,
    pub claim: Option<Claim>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserRow {
    /// `None` for TikTok's id 0 (no id): such a user has no `buyers` row.
    pub id: Option<i64>,
    pub unique_id: String,
    pub nickname: String,
    pub avatar_url: Option<String>,
}

/// The type-specific columns of `events`; `None` is NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DataColumns {
    pub comment: Option<String>,
    pub gift_id: Option<i64>,
    pub gift_name: Option<String>,
    pub repeat_count: Option<i64>,
    pub total_diamonds: Option<i64>,
    /// An in-progress update of a gift streak: exports that add diamonds skip these.
    pub gift_streaking: Option<bool>,
    pub like_count: Option<i64>,
    pub total_like_count: Option<i64>,
    pub viewer_count: Option<i64>,
}

impl Op {
    /// `None` for what the store does not keep: a connection line that changes nothing about the live,
    /// and an event without a message id (which could not be de-duplicated).
    pub fn from_event(live: LiveId, event: &Event) -> Option<Op> {
        Self::from_event_with_json(live, event, || event.to_json_line())
    }

    /// As [`Op::from_event`], with the event's NDJSON line (without its newline) given by `json` when
    /// the caller has already written it.
    pub fn from_event_with_json(
        live: LiveId,
        event: &Event,
        json: impl FnOnce() -> String,
    ) -> Option<Op> {
        if let EventData::Connection { state, .. } = &event.data {
            let room_id = (event.room_id != 0).then(|| sql_id(event.room_id));
            let ended_ms = (*state == ConnectionState::Disconnected).then_some(event.ts_ms);
            return (room_id.is_some() || ended_ms.is_some()).then_some(Op::Live {
                live,
                room_id,
                ended_ms,
                title: None,
            });
        }
        if event.msg_id == 0 {
            return None;
        }
        Some(Op::Event(Box::new(EventRow {
            live,
            room_id: sql_id(event.room_id),
            msg_id: sql_id(event.msg_id),
            kind: event.data.type_name(),
            ts: event.ts_ms,
            user: event.user.as_ref().map(|u| UserRow {
                id: (u.id != 0).then(|| sql_id(u.id)),
                unique_id: u.unique_id.clone(),
                nickname: u.nickname.clone(),
                avatar_url: u.avatar_url.clone(),
            }),
            data: DataColumns::of(&event.data),
            json: json(),
            claim: event.claim().cloned(),
        })))
    }
}

impl DataColumns {
    fn of(data: &EventData) -> DataColumns {
        match data {
            EventData::Chat { comment, .. } => DataColumns {
                comment: Some(comment.clone()),
                ..Default::default()
            },
            EventData::Gift {
                gift_id,
                gift_name,
                repeat_count,
                total_diamonds,
                streaking,
                ..
            } => DataColumns {
                gift_id: Some(sql_id(*gift_id)),
                gift_name: Some(gift_name.clone()),
                repeat_count: Some(sql_count(*repeat_count)),
                total_diamonds: Some(sql_count(*total_diamonds)),
                gift_streaking: Some(*streaking),
                ..Default::default()
            },
            EventData::Like {
                like_count,
                total_like_count,
            } => DataColumns {
                like_count: Some(sql_count(*like_count)),
                total_like_count: Some(sql_count(*total_like_count)),
                ..Default::default()
            },
            EventData::RoomUser { viewer_count, .. } => DataColumns {
                viewer_count: Some(sql_count(*viewer_count)),
                ..Default::default()
            },
            _ => DataColumns::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{ROOM, chat, claim, gift, like, user};

    fn row(event: &Event) -> EventRow {
        match Op::from_event(LiveId(1), event) {
            Some(Op::Event(row)) => *row,
            other => panic!("expected an event row, got {other:?}"),
        }
    }

    #[test]
    fn columns_follow_the_event_and_json_is_its_ndjson_line() {
        let event = chat(
            5,
            user(42, "anna"),
            1_000,
            "jp 12 M",
            Some(claim("12", "M", 2)),
        );
        let r = row(&event);
        assert_eq!(
            (r.room_id, r.msg_id, r.kind, r.ts),
            (ROOM as i64, 5, "chat", 1_000)
        );
        assert_eq!(r.json, event.to_json_line());
        assert_eq!(r.data.comment.as_deref(), Some("jp 12 M"));
        assert_eq!(r.claim.as_ref(), event.claim());
        let u = r.user.unwrap();
        assert_eq!((u.id, u.unique_id.as_str()), (Some(42), "anna"));

        let r = row(&gift(6, 42, 2_000, 5, false));
        assert_eq!(
            r.data,
            DataColumns {
                gift_id: Some(5655),
                gift_name: Some("Rose".into()),
                repeat_count: Some(5),
                total_diamonds: Some(5),
                gift_streaking: Some(false),
                ..Default::default()
            }
        );
        let r = row(&like(7, 42, 3_000));
        assert_eq!(
            (r.data.like_count, r.data.total_like_count),
            (Some(15), Some(1500))
        );
        assert_eq!(r.claim, None);
    }

    #[test]
    fn connection_lines_update_the_live_instead_of_making_a_row() {
        let mut line = Event::connection(
            ROOM,
            EventData::Connection {
                state: ConnectionState::Disconnected,
                attempt: None,
                delay_ms: None,
                reason: Some("the live ended".into()),
            },
        );
        line.ts_ms = 9_000;
        assert_eq!(
            Op::from_event(LiveId(1), &line),
            Some(Op::Live {
                live: LiveId(1),
                room_id: Some(ROOM as i64),
                ended_ms: Some(9_000),
                title: None,
            })
        );
        line.room_id = 0;
        line.data = EventData::Connection {
            state: ConnectionState::Reconnecting,
            attempt: Some(1),
            delay_ms: Some(1_000),
            reason: None,
        };
        assert_eq!(Op::from_event(LiveId(1), &line), None);
    }

    #[test]
    fn user_id_zero_is_no_buyer() {
        let r = row(&chat(5, user(0, "ghost"), 1_000, "hi", None));
        assert_eq!(r.user.unwrap().id, None);
    }
}
