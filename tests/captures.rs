//! Decodes every real frame captured from TikTok (../shared/captures) and asserts the values listed in
//! PROTOCOL.md §6, through the library and, for the push frame, through the `tiklive replay` binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::Bytes;
use prost::Message;
use tiklive::events::{ControlAction, DecodeOptions, Event, EventData, SocialKind, decode_message};
use tiklive::protocol::{self, BaseMessage, FrameContent, PushFrame};

fn capture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/captures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn decode(method: &str, file: &str) -> Event {
    let msg = BaseMessage {
        method: method.into(),
        payload: Bytes::from(capture(file)),
        msg_id: 0,
    };
    decode_message(&msg, 0, &DecodeOptions::default()).expect("capture decodes")
}

#[test]
fn member_join_1() {
    let e = decode("WebcastMemberMessage", "member-join-1.pb");
    assert_eq!(e.msg_id, 7270196813217958699);
    assert_eq!(e.room_id, 7270140534545550112);
    assert_eq!(e.ts_ms, 1692724604212);
    let user = e.user.as_ref().unwrap();
    assert_eq!(user.id, 6653906685407985669);
    assert_eq!(user.nickname, "\u{1F5E3}\u{FE0F}");
    assert_eq!(user.unique_id, "ttx.zyn");
    assert_eq!(user.follow_role, 0);
    assert_eq!(user.gifter_level, 8);
    assert_eq!(
        e.data,
        EventData::Member {
            action_id: 1,
            member_count: 165
        }
    );
    let line = e.to_json_line();
    assert!(line.starts_with(r#"{"v":1,"type":"member","ts":"2023-08-22T17:16:44.212Z","room_id":"7270140534545550112","msg_id":"7270196813217958699","user":{"id":"6653906685407985669","unique_id":"ttx.zyn","nickname":"🗣️""#), "{line}");
}

#[test]
fn member_join_2() {
    let e = decode("WebcastMemberMessage", "member-join-2.pb");
    assert_eq!(e.msg_id, 7273941110900738848);
    assert_eq!(e.room_id, 7273916330678831904);
    assert_eq!(e.ts_ms, 1693596391780);
    let user = e.user.as_ref().unwrap();
    assert_eq!(user.id, 6863706078548001798);
    assert_eq!(user.nickname, "Emilka Forczek");
    assert_eq!(user.unique_id, "emilkaforczek");
    assert_eq!(user.follow_role, 1);
    assert_eq!(user.gifter_level, 11);
    assert_eq!(
        e.data,
        EventData::Member {
            action_id: 1,
            member_count: 774
        }
    );
}

#[test]
fn chat_emote_only() {
    let e = decode("WebcastChatMessage", "chat-emote-only.pb");
    assert_eq!(e.msg_id, 7270204318916594464);
    assert_eq!(e.room_id, 7270193599273683745);
    assert_eq!(e.ts_ms, 1692726385028);
    let user = e.user.as_ref().unwrap();
    assert_eq!(user.id, 6919629632300958726);
    assert_eq!(user.nickname, "almando29");
    assert_eq!(user.unique_id, "almando29");
    assert_eq!(user.follow_role, 2);
    assert!(user.is_subscriber);
    assert!(!user.is_moderator);
    assert_eq!(user.gifter_level, 16);
    let avatar = user.avatar_url.as_deref().unwrap();
    assert!(
        avatar.contains("aweme/100x100/") && avatar.contains("1689362917547010.webp"),
        "{avatar}"
    );
    let EventData::Chat {
        comment,
        emotes,
        claim,
    } = &e.data
    else {
        panic!("not a chat: {:?}", e.data)
    };
    assert_eq!(comment, "");
    assert!(claim.is_none());
    assert_eq!(emotes.len(), 19);
    for (i, emote) in emotes.iter().enumerate() {
        assert_eq!(emote.index, i as u64);
        assert_eq!(emote.emote_id, "7202546868612680453");
    }
}

#[test]
fn gift_rose_streak_start() {
    let e = decode("WebcastGiftMessage", "gift-rose-streak-start.pb");
    assert_eq!(e.msg_id, 7270201542891817761);
    assert_eq!(e.room_id, 7270193599273683745);
    assert_eq!(e.ts_ms, 1692725773880);
    let user = e.user.as_ref().unwrap();
    assert_eq!(user.id, 6809568862012081157);
    assert_eq!(user.nickname, "🧚‍♀️Malowana🧜‍♀️");
    assert_eq!(user.unique_id, "malowana_");
    assert_eq!(user.gifter_level, 17);
    assert_eq!(
        e.data,
        EventData::Gift {
            gift_id: 5655,
            gift_name: "Rose".into(),
            gift_type: 1,
            repeat_count: 1,
            repeat_end: false,
            streaking: true,
            group_id: 1692725773860,
            diamond_count: 1,
            total_diamonds: 1,
            gift_image_url: Some("https://p16-webcast.tiktokcdn.com/img/maliva/webcast-va/eba3a9bb85c33e017f3648eaf88d7189~tplv-obj.png".into()),
            receiver_user_id: Some(6671556836829446149),
        }
    );
    // A streak in progress is not printed by default: only its final message is.
    let filter = tiklive::pipeline::EventFilter::new(&[], false, false).unwrap();
    assert!(!filter.accepts(&e));
    let streaks = tiklive::pipeline::EventFilter::new(&[], false, true).unwrap();
    assert!(streaks.accepts(&e));
}

#[test]
fn im_delete() {
    let e = decode("WebcastImDeleteMessage", "im-delete.pb");
    assert_eq!(e.msg_id, 7270208754506189573);
    assert_eq!(e.room_id, 7269585091200895762);
    assert_eq!(e.ts_ms, 1692727384244);
    assert_eq!(
        e.data,
        EventData::ImDelete {
            delete_msg_ids: vec![],
            delete_user_ids: vec!["7223833453145474054".into()],
        }
    );
}

#[test]
fn social_share() {
    let e = decode("WebcastSocialMessage", "social-share.pb");
    assert_eq!(e.msg_id, 7270211734014528288);
    assert_eq!(e.room_id, 7270202843985234720);
    assert_eq!(e.ts_ms, 1692728078308);
    let user = e.user.as_ref().unwrap();
    assert_eq!(user.id, 7107661845306311685);
    assert_eq!(user.nickname, "mr A.L.F.A");
    assert_eq!(user.unique_id, ".zapisywane");
    assert_eq!(user.follow_role, 1);
    assert_eq!(user.gifter_level, 0);
    assert_eq!(
        e.data,
        EventData::Social {
            social_type: SocialKind::Share,
            action_id: 3,
            share_count: 25,
            display_key: "pm_mt_guidance_viewer_10_share".into(),
        }
    );
}

#[test]
fn push_frame_like_decodes_and_its_ack_matches_the_test_vector() {
    let raw = capture("pushframe-like.bin");
    assert_eq!(raw.len(), 3790);
    let frame = PushFrame::decode(raw.as_slice()).unwrap();
    assert_eq!(frame.seq_id, 9);
    assert_eq!(frame.log_id, 5092463814493970448);
    assert_eq!(frame.service, 8888);
    assert_eq!(frame.method, 8);
    assert_eq!(frame.headers.len(), 1);
    assert_eq!(frame.headers[0].key, "compress_type");
    assert_eq!(frame.headers[0].value, "none");
    assert_eq!(frame.payload_encoding, "pb");
    assert_eq!(frame.payload.len(), 3738);

    let FrameContent::Messages { log_id, result } =
        protocol::decode_frame(Bytes::from(raw)).unwrap()
    else {
        panic!("not a msg frame")
    };
    assert_eq!(log_id, 5092463814493970448);
    assert_eq!(result.cursor, "1692120689751_7267603020139989890_1_1_0_0");
    assert_eq!(result.fetch_interval, 4200);
    assert_eq!(result.now, 1692120689751);
    assert_eq!(result.internal_ext, "-");
    assert_eq!(result.heartbeat_duration, 15);
    assert!(result.need_ack);
    assert_eq!(result.messages.len(), 1);
    let msg = &result.messages[0];
    assert_eq!(msg.method, "WebcastLikeMessage");
    assert_eq!(msg.payload.len(), 3642);
    assert_eq!(msg.msg_id, 7267603013186423585);

    let ack: Vec<u8> = "10 90 c0 c6 b3 bb 9b 84 d6 46 32 02 70 62 3a 03 61 63 6b 42 01 2d"
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(protocol::encode_ack(log_id, &result.internal_ext), ack);

    let e = decode_message(msg, result.now as i64, &DecodeOptions::default()).unwrap();
    assert_eq!(e.msg_id, 7267603013186423585);
    assert_eq!(e.room_id, 7267595214226705184);
    assert_eq!(e.ts_ms, 1692120688710);
    assert_eq!(
        e.data,
        EventData::Like {
            like_count: 15,
            total_like_count: 14470
        }
    );
    let user = e.user.as_ref().unwrap();
    assert_eq!(user.id, 7266366998618375200);
    assert_eq!(user.nickname, "hulajnoga czek");
    assert_eq!(user.unique_id, "hulajnoga.czek5");
    assert_eq!(user.gifter_level, 2);
}

#[test]
fn include_raw_carries_the_decoded_message() {
    let msg = BaseMessage {
        method: "WebcastSocialMessage".into(),
        payload: Bytes::from(capture("social-share.pb")),
        msg_id: 0,
    };
    let opts = DecodeOptions {
        include_raw: true,
        ..Default::default()
    };
    let e = decode_message(&msg, 0, &opts).unwrap();
    let raw = e.raw.as_ref().unwrap();
    assert_eq!(raw["share_count"], 25);
    assert_eq!(raw["common"]["msg_id"], "7270211734014528288");
    assert_eq!(raw["user"]["display_id"], ".zapisywane");
}

#[test]
fn stream_end_control_is_recognised() {
    let control = tiklive::protocol::ControlMessage {
        action: 3,
        ..Default::default()
    };
    let msg = BaseMessage {
        method: "WebcastControlMessage".into(),
        payload: control.encode_to_vec().into(),
        msg_id: 9,
    };
    let e = decode_message(&msg, 5, &DecodeOptions::default()).unwrap();
    assert!(e.ends_stream());
    assert!(matches!(
        e.data,
        EventData::Control {
            action: ControlAction::StreamEnd,
            ..
        }
    ));
    assert_eq!(e.msg_id, 9, "falls back to the envelope's id");
    assert_eq!(e.ts_ms, 5, "falls back to the batch time");
}

/// The real push frame through the binary: `replay` prints the like with its real values.
#[test]
fn replay_binary_prints_the_captured_like() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("like.rec");
    let frame = capture("pushframe-like.bin");
    let mut rec = (frame.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&frame);
    rec.extend_from_slice(&rec.clone()); // the same frame twice: printed once
    std::fs::write(&path, rec).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tiklive"))
        .args(["replay", "--quiet"])
        .arg(&path)
        .current_dir(dir.path())
        .env("TIKLIVE_DB", dir.path().join("t.db"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["type"], "like");
    assert_eq!(v["ts"], "2023-08-15T17:31:28.710Z");
    assert_eq!(v["room_id"], "7267595214226705184");
    assert_eq!(v["msg_id"], "7267603013186423585");
    assert_eq!(v["like_count"], 15);
    assert_eq!(v["total_like_count"], 14470);
    assert_eq!(v["user"]["unique_id"], "hulajnoga.czek5");
    assert_eq!(v["user"]["id"], "7266366998618375200");
}
