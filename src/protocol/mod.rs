//! The webcast wire protocol: push frames, gzip, fetch results, and the three frames a client sends
//! (ack, heartbeat, enter-room). Everything here is pure bytes in, bytes out, so the live client, the
//! replay pipeline, the fuzz target and the test mocks all share one implementation.

pub mod messages;

use std::io::Read;

use bytes::Bytes;
use prost::Message;

pub use messages::*;

/// Largest inflated payload accepted; TikTok batches are tens of KiB, so anything near this is garbage or
/// a decompression bomb.
pub const MAX_INFLATED_PAYLOAD: usize = 32 * 1024 * 1024;

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("push frame is not valid protobuf: {0}")]
    Frame(#[source] prost::DecodeError),
    #[error("gzip payload is corrupt: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("gzip payload inflates beyond {MAX_INFLATED_PAYLOAD} bytes")]
    TooLarge,
    #[error("fetch result is not valid protobuf: {0}")]
    FetchResult(#[source] prost::DecodeError),
}

/// What one WebSocket binary message carried.
#[derive(Debug)]
pub enum FrameContent {
    /// A `msg` frame: a batch of event messages.
    Messages { log_id: u64, result: FetchResult },
    /// Any other payload type (`im_enter_room_resp`, `hb`, `ack`, …), kept by name.
    Control { payload_type: String },
}

/// Decodes one push frame and, for `msg` frames, its (possibly gzip'ed) fetch result (§2.3).
pub fn decode_frame(bytes: Bytes) -> Result<FrameContent, FrameError> {
    let frame = PushFrame::decode(bytes).map_err(FrameError::Frame)?;
    if frame.payload_type != "msg" {
        return Ok(FrameContent::Control {
            payload_type: frame.payload_type,
        });
    }
    let payload = frame_payload(&frame)?;
    let result = FetchResult::decode(payload).map_err(FrameError::FetchResult)?;
    Ok(FrameContent::Messages {
        log_id: frame.log_id,
        result,
    })
}

/// The frame's payload, inflated when the `compress_type` header says gzip or the bytes start with the
/// gzip magic (§2.2: peers disagree on which signal to trust, so we honour both).
pub fn frame_payload(frame: &PushFrame) -> Result<Bytes, FrameError> {
    let says_gzip = frame
        .headers
        .iter()
        .any(|h| h.key == "compress_type" && h.value == "gzip");
    if says_gzip || frame.payload.starts_with(&GZIP_MAGIC) {
        inflate(&frame.payload).map(Bytes::from)
    } else {
        Ok(frame.payload.clone())
    }
}

/// Inflates a gzip stream, sizing the buffer from the trailer's length field to avoid regrowth.
pub fn inflate(gz: &[u8]) -> Result<Vec<u8>, FrameError> {
    let hint = gz
        .len()
        .checked_sub(4)
        .map(|at| u32::from_le_bytes(gz[at..].try_into().expect("4 bytes")) as usize)
        .unwrap_or(0)
        .min(MAX_INFLATED_PAYLOAD);
    let mut out = Vec::with_capacity(hint.max(gz.len() * 2));
    let mut reader = flate2::bufread::GzDecoder::new(gz).take(MAX_INFLATED_PAYLOAD as u64 + 1);
    reader.read_to_end(&mut out).map_err(FrameError::Gzip)?;
    if out.len() > MAX_INFLATED_PAYLOAD {
        return Err(FrameError::TooLarge);
    }
    Ok(out)
}

fn client_frame(log_id: u64, payload_type: &str, payload: Vec<u8>) -> Vec<u8> {
    PushFrame {
        log_id,
        payload_encoding: "pb".into(),
        payload_type: payload_type.into(),
        payload: payload.into(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The ack for a `msg` frame whose fetch result had `need_ack` (§2.6). An empty `internal_ext` is sent
/// as `-`, as the Python client does, rather than skipping the ack.
pub fn encode_ack(log_id: u64, internal_ext: &str) -> Vec<u8> {
    let ext = if internal_ext.is_empty() {
        "-"
    } else {
        internal_ext
    };
    client_frame(log_id, "ack", ext.as_bytes().to_vec())
}

/// A heartbeat frame (§2.7); `seq` starts at 1 after each enter-room.
pub fn encode_heartbeat(room_id: u64, seq: u64) -> Vec<u8> {
    let hb = HeartBeat {
        room_id,
        send_packet_seq_id: seq,
    };
    client_frame(0, "hb", hb.encode_to_vec())
}

/// The `im_enter_room` frame sent right after the socket opens (§2.8).
pub fn encode_enter_room(room_id: u64, enter_unique_id: u64) -> Vec<u8> {
    let enter = ImEnterRoom {
        room_id,
        live_id: 12,
        identity: "audience".into(),
        enter_unique_id,
        filter_welcome_msg: "0".into(),
        ..Default::default()
    };
    client_frame(0, "im_enter_room", enter.encode_to_vec())
}

/// Wraps a fetch result as an uncompressed `msg` push frame. The signing service hands us the first
/// batch outside any frame; recording it in this form lets `replay` decode it like every other frame.
pub fn wrap_fetch_result(result_bytes: &[u8]) -> Vec<u8> {
    PushFrame {
        headers: vec![HeaderEntry {
            key: "compress_type".into(),
            value: "none".into(),
        }],
        payload_encoding: "pb".into(),
        payload_type: "msg".into(),
        payload: Bytes::copy_from_slice(result_bytes),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn ack_matches_protocol_test_vector() {
        let expected = hex("10 90 c0 c6 b3 bb 9b 84 d6 46 32 02 70 62 3a 03 61 63 6b 42 01 2d");
        assert_eq!(encode_ack(5092463814493970448, "-"), expected);
        assert_eq!(encode_ack(5092463814493970448, ""), expected);
    }

    #[test]
    fn heartbeat_matches_protocol_test_vector() {
        let expected = hex("32 02 70 62 3a 02 68 62 42 0c 08 a0 96 bf da f8 ea eb ed 64 10 01");
        assert_eq!(encode_heartbeat(7267595214226705184, 1), expected);
    }

    #[test]
    fn enter_room_matches_protocol_test_vector() {
        let payload =
            "08 a0 96 bf da f8 ea eb ed 64 20 0c 2a 08 61 75 64 69 65 6e 63 65 40 01 4a 01 30";
        let frame =
            format!("32 02 70 62 3a 0d 69 6d 5f 65 6e 74 65 72 5f 72 6f 6f 6d 42 1b {payload}");
        assert_eq!(encode_enter_room(7267595214226705184, 1), hex(&frame));
    }

    #[test]
    fn gzip_payload_is_inflated_by_magic_even_without_header() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let result = FetchResult {
            cursor: "c1".into(),
            need_ack: true,
            ..Default::default()
        };
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&result.encode_to_vec()).unwrap();
        let frame = PushFrame {
            log_id: 7,
            payload_type: "msg".into(),
            payload: gz.finish().unwrap().into(),
            ..Default::default()
        };
        match decode_frame(frame.encode_to_vec().into()).unwrap() {
            FrameContent::Messages { log_id, result } => {
                assert_eq!(log_id, 7);
                assert_eq!(result.cursor, "c1");
                assert!(result.need_ack);
            }
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_a_panic() {
        let frame = PushFrame {
            payload_type: "msg".into(),
            headers: vec![HeaderEntry {
                key: "compress_type".into(),
                value: "gzip".into(),
            }],
            payload: Bytes::from_static(&[0x1f, 0x8b, 0x08, 0, 1, 2, 3]),
            ..Default::default()
        };
        assert!(matches!(
            decode_frame(frame.encode_to_vec().into()),
            Err(FrameError::Gzip(_))
        ));
    }
}
