//! The push WebSocket (PROTOCOL.md §1.6–§2): checks the upgrade request against the signing answer it
//! claims to use, rejects it the way TikTok does when it does not match, then plays a test's script
//! while checking every frame the client sends (enter first, numbered heartbeats, exact acks).

use std::sync::Arc;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tiklive::protocol::{BaseMessage, FetchResult, HeaderEntry, HeartBeat, ImEnterRoom, PushFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::super::http::{Request, read_request, respond};
use super::super::messages::capture_frame_ack;
use super::{
    CLIENT_DEADLINE, ClientFrame, Conn, Enc, FrameEnc, Handshake, Sent, Shared, State, Step,
    now_ms, token,
};

type Sink = Arc<tokio::sync::Mutex<SplitSink<WebSocketStream<TcpStream>, Message>>>;

pub(super) async fn serve_ws(shared: &Arc<Shared>, index: usize, mut stream: TcpStream) {
    let plan = shared
        .scenario
        .conns
        .get(index)
        .cloned()
        .unwrap_or(Conn::RefuseTcp);
    let set = |h: Handshake| shared.update(|s| s.conns[index].handshake = h);
    if let Conn::RefuseTcp = plan {
        set(Handshake::RefusedTcp);
        return;
    }
    let request = match read_request(&mut stream).await {
        Ok(Some(r)) => r,
        other => {
            set(Handshake::Invalid(format!("no request: {other:?}")));
            return;
        }
    };
    shared.update(|s| s.conns[index].request = Some(request.clone()));
    let checked = check_handshake(shared, index, &request);
    let (room_id, gzip) = match (checked, &plan) {
        (Err(Refusal::NotWebSocket(why)), _) => {
            shared.violation(format!("WebSocket #{index}: {why}"));
            set(Handshake::Invalid(why));
            let _ = respond(&mut stream, 400, &[], b"Bad Request").await;
            return;
        }
        (Err(Refusal::Reject { msg, why }), _) => {
            shared.violation(format!("WebSocket #{index} rejected ({msg}): {why}"));
            reject(&mut stream, msg).await;
            set(Handshake::Rejected(msg.into()));
            return;
        }
        (Ok(_), Conn::RejectHandshake) => {
            reject(&mut stream, "illegal secret key").await;
            set(Handshake::Rejected("illegal secret key".into()));
            return;
        }
        (Ok(ok), _) => ok,
    };
    let Conn::Script(steps) = plan else {
        unreachable!()
    };
    let key = request.header("sec-websocket-key").unwrap_or("");
    let accept = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(accept.as_bytes()).await.is_err() {
        set(Handshake::Invalid(
            "the client left during the handshake".into(),
        ));
        return;
    }
    shared.update(|s| {
        let conn = &mut s.conns[index];
        conn.handshake = Handshake::Accepted;
        conn.gzip = gzip;
    });
    let ws = WebSocketStream::from_raw_socket(stream, WsRole::Server, None).await;
    let (sink, frames) = ws.split();
    let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
    let reader = tokio::spawn(read_client(
        shared.clone(),
        index,
        room_id,
        frames,
        sink.clone(),
    ));
    run_script(shared, index, gzip, steps, &sink, reader).await;
}

enum Refusal {
    NotWebSocket(String),
    /// TikTok's answer: 200 with this `handshake-msg`; `why` is what the client did wrong.
    Reject {
        msg: &'static str,
        why: String,
    },
}

/// Checks the upgrade request against the signing answer it claims to use (§1.6). Returns the room id
/// and whether gzip was asked for.
fn check_handshake(shared: &Shared, index: usize, req: &Request) -> Result<(u64, bool), Refusal> {
    if req.method != "GET" || req.path != "/webcast/im/push/" {
        return Err(Refusal::NotWebSocket(format!(
            "{} {}",
            req.method, req.path
        )));
    }
    let has = |name: &str, want: &str| {
        req.header(name)
            .is_some_and(|v| v.to_ascii_lowercase().contains(want))
    };
    if !has("upgrade", "websocket")
        || !has("connection", "upgrade")
        || req.header("sec-websocket-version") != Some("13")
        || req.header("sec-websocket-key").is_none()
        || !req.tail.is_empty()
    {
        return Err(Refusal::NotWebSocket(format!(
            "not a WebSocket upgrade: {:?}",
            req.headers
        )));
    }
    let imprp = req.param("imprp").unwrap_or("");
    let signing = shared.update(|s| {
        let at = s
            .signings
            .iter()
            .position(|g| !g.imprp.is_empty() && g.imprp == imprp)?;
        let reused = s.signings[at].used;
        s.signings[at].used = true;
        s.conns[index].signing = Some(at);
        Some((s.signings[at].clone(), reused))
    });
    let Some((signing, reused)) = signing else {
        return Err(Refusal::Reject {
            msg: "illegal secret key",
            why: format!("imprp {imprp:?} was not handed out by the signing service"),
        });
    };
    if reused {
        return Err(Refusal::Reject {
            msg: "illegal secret key",
            why: "a signed URL was used twice".into(),
        });
    }
    if req.param("aid") != Some("1988") {
        return Err(Refusal::Reject {
            msg: "illegal app_id",
            why: format!("aid {:?}", req.param("aid")),
        });
    }
    let mut wrong = Vec::new();
    let mut expect = |what: &str, got: Option<&str>, want: &str| {
        if got != Some(want) {
            wrong.push(format!("{what} {got:?}, signed {want:?}"));
        }
    };
    let room = signing.room_id.to_string();
    expect("room_id", req.param("room_id"), &room);
    expect("cursor", req.param("cursor"), &signing.cursor);
    expect(
        "internal_ext",
        req.param("internal_ext"),
        &signing.internal_ext,
    );
    expect("User-Agent", req.header("user-agent"), &signing.user_agent);
    let cookies = req.cookies();
    let cookie = |name: &str| {
        cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    expect("ttwid cookie", cookie("ttwid"), &signing.ttwid);
    wrong.extend(super::peers::session_cookie_problems(shared, &cookies));
    if !req
        .query
        .iter()
        .any(|(k, v)| k == "version_code" && v == "270000")
    {
        wrong.push("no version_code=270000".into());
    }
    let compress = req.param("compress");
    if compress.is_some_and(|c| c != "gzip") {
        wrong.push(format!("compress={compress:?}"));
    }
    if !wrong.is_empty() {
        return Err(Refusal::Reject {
            msg: "illegal secret key",
            why: wrong.join("; "),
        });
    }
    Ok((signing.room_id, compress == Some("gzip")))
}

async fn reject(stream: &mut TcpStream, msg: &str) {
    let _ = respond(
        stream,
        200,
        &[
            ("handshake-status", "417".into()),
            ("handshake-msg", msg.into()),
            ("x-tt-logid", token(34)),
        ],
        b"",
    )
    .await;
}

/// Reads and checks every frame the client sends (§2.6–§2.8) until its side ends.
async fn read_client(
    shared: Arc<Shared>,
    index: usize,
    room_id: u64,
    mut frames: SplitStream<WebSocketStream<TcpStream>>,
    sink: Sink,
) {
    let violation = |text: String| shared.violation(format!("WebSocket #{index}: {text}"));
    let end = |text: String| {
        shared.update(|s| {
            s.conns[index].end.get_or_insert(text);
        })
    };
    while let Some(message) = frames.next().await {
        let bytes = match message {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(frame)) => {
                end(match frame {
                    Some(f) => format!("close {}", u16::from(f.code)),
                    None => "close".into(),
                });
                continue; // reading on sends tungstenite's reply to the close
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => {
                violation(format!("unexpected client message {other:?}"));
                continue;
            }
            Err(e) => {
                end(format!("error: {e}"));
                break;
            }
        };
        let Ok(frame) = PushFrame::decode(bytes.clone()) else {
            violation(format!("a client frame is not a PushFrame: {bytes:?}"));
            continue;
        };
        if frame.payload_encoding != "pb" {
            violation(format!("payload_encoding {:?}", frame.payload_encoding));
        }
        let entered = shared.lock().conns[index].entered();
        let record = match frame.payload_type.as_str() {
            "im_enter_room" => {
                if entered {
                    violation("entered the room twice".into());
                }
                match ImEnterRoom::decode(frame.payload.clone()) {
                    Ok(e) => {
                        if e.room_id != room_id
                            || e.live_id != 12
                            || e.identity != "audience"
                            || e.enter_unique_id == 0
                            || e.filter_welcome_msg != "0"
                        {
                            violation(format!("bad im_enter_room {e:?}"));
                        }
                        ClientFrame::Enter(e)
                    }
                    Err(e) => {
                        violation(format!("im_enter_room payload: {e}"));
                        ClientFrame::Other("im_enter_room".into())
                    }
                }
            }
            "hb" => {
                if !entered {
                    // What TikTok does to a heartbeat before the enter (§1.8).
                    violation("heartbeat before im_enter_room".into());
                    let close = Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "payload_handler_hb".into(),
                    }));
                    let _ = sink.lock().await.send(close).await;
                }
                match HeartBeat::decode(frame.payload.clone()) {
                    Ok(hb) => {
                        let expected = shared.lock().conns[index].heartbeat_seqs().len() as u64 + 1;
                        if hb.room_id != room_id || hb.send_packet_seq_id != expected {
                            violation(format!(
                                "heartbeat {hb:?}, expected room {room_id} seq {expected}"
                            ));
                        }
                        ClientFrame::Heartbeat(hb)
                    }
                    Err(e) => {
                        violation(format!("heartbeat payload: {e}"));
                        ClientFrame::Other("hb".into())
                    }
                }
            }
            "ack" => {
                let log_id = frame.log_id;
                let problem = shared.update(|s| {
                    let conn = &mut s.conns[index];
                    let Some(sent) = conn.sent.iter().find(|f| f.log_id == log_id) else {
                        return Some(format!("ack of unknown log id {log_id}"));
                    };
                    let Some(ext) = &sent.ack else {
                        return Some(format!("ack of frame {log_id}, which did not ask for one"));
                    };
                    if frame.payload.as_ref() != ext.as_bytes() {
                        return Some(format!(
                            "ack of {log_id} carries {:?}, expected internal_ext {ext:?}",
                            String::from_utf8_lossy(&frame.payload)
                        ));
                    }
                    if conn.acked.contains(&log_id) {
                        return Some(format!("frame {log_id} acked twice"));
                    }
                    conn.acked.push(log_id);
                    None
                });
                if let Some(p) = problem {
                    violation(p);
                }
                if !entered {
                    violation("ack before im_enter_room".into());
                }
                ClientFrame::Ack {
                    log_id,
                    payload: frame.payload.to_vec(),
                }
            }
            other => {
                violation(format!("unexpected client payload_type {other:?}"));
                ClientFrame::Other(other.into())
            }
        };
        if !entered && !matches!(record, ClientFrame::Enter(_)) {
            violation(format!(
                "first client frame is {record:?}, not im_enter_room"
            ));
        }
        shared.update(|s| s.conns[index].from_client.push(record));
    }
    end("eof".into());
}

async fn run_script(
    shared: &Arc<Shared>,
    index: usize,
    gzip: bool,
    steps: Vec<Step>,
    sink: &Sink,
    reader: tokio::task::JoinHandle<()>,
) {
    let violation = |text: String| shared.violation(format!("WebSocket #{index}: {text}"));
    let gone = move |s: &State| s.conns[index].end.is_some();
    // TikTok pushes to a client that has entered the room.
    if !shared
        .wait_until(CLIENT_DEADLINE, |s| s.conns[index].entered() || gone(s))
        .await
    {
        violation("no im_enter_room".into());
    }
    // TikTok answers the enter (§1.7); clients must take it in their stride.
    let log_id = shared.update(|s| {
        s.next_log_id += 1;
        s.next_log_id
    });
    let enter_resp = PushFrame {
        log_id,
        payload_encoding: "pb".into(),
        payload_type: "im_enter_room_resp".into(),
        ..Default::default()
    };
    shared.update(|s| {
        s.conns[index].sent.push(Sent {
            log_id,
            enc: FrameEnc::Control,
            ack: None,
            cursor: None,
            msg_ids: Vec::new(),
        })
    });
    let _ = send(sink, Message::Binary(enter_resp.encode_to_vec().into())).await;
    let all_acked = |s: &State| s.conns[index].unacked().is_empty() || gone(s);
    for step in steps {
        match step {
            Step::Frame(enc, messages) => {
                let (bytes, sent) = build_frame(shared, enc, gzip, messages);
                shared.update(|s| s.conns[index].sent.push(sent));
                if send(sink, Message::Binary(bytes.into())).await.is_err() {
                    break;
                }
            }
            Step::Lazy(make) => {
                let messages = (make.0)().await;
                let (bytes, sent) = build_frame(shared, Enc::Auto, gzip, messages);
                shared.update(|s| s.conns[index].sent.push(sent));
                if send(sink, Message::Binary(bytes.into())).await.is_err() {
                    break;
                }
            }
            Step::Raw(bytes) => {
                let log_id = PushFrame::decode(bytes.as_slice())
                    .map(|f| f.log_id)
                    .unwrap_or(0);
                let ack = capture_frame_ack(&bytes);
                let cursor = decoded_cursor(&bytes);
                shared.update(|s| {
                    s.conns[index].sent.push(Sent {
                        log_id,
                        enc: FrameEnc::Raw,
                        ack: ack.map(|(_, ext)| ext),
                        cursor,
                        msg_ids: Vec::new(),
                    })
                });
                if send(sink, Message::Binary(bytes.into())).await.is_err() {
                    break;
                }
            }
            Step::Text(text) => {
                shared.update(|s| {
                    s.conns[index].sent.push(Sent {
                        log_id: 0,
                        enc: FrameEnc::Text,
                        ack: None,
                        cursor: None,
                        msg_ids: Vec::new(),
                    })
                });
                if send(sink, Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            Step::WaitHeartbeats(n) => {
                if !shared
                    .wait_until(CLIENT_DEADLINE, |s| {
                        s.conns[index].heartbeat_seqs().len() >= n || gone(s)
                    })
                    .await
                {
                    violation(format!("fewer than {n} heartbeats"));
                }
            }
            Step::WaitRelease => {
                if !shared
                    .wait_until(CLIENT_DEADLINE, |s| s.released || gone(s))
                    .await
                {
                    violation("the test never released the script".into());
                }
            }
            Step::Drop => {
                if !shared.wait_until(CLIENT_DEADLINE, all_acked).await {
                    violation("frames not acked before the drop".into());
                }
                shared.update(|s| {
                    s.conns[index]
                        .end
                        .get_or_insert("dropped by the mock".into());
                });
                reader.abort();
                let _ = reader.await;
                // The reader held the other half; with both gone the TCP stream closes, no close frame.
                return;
            }
            Step::Close(code, reason) => {
                if !shared.wait_until(CLIENT_DEADLINE, all_acked).await {
                    violation("frames not acked before the close".into());
                }
                let close = Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                }));
                if send(sink, close).await.is_err() {
                    break;
                }
            }
            Step::Silence => {
                if !shared.wait_until(CLIENT_DEADLINE, all_acked).await {
                    violation("frames not acked before the silence".into());
                }
                break;
            }
        }
    }
    if tokio::time::timeout(CLIENT_DEADLINE, reader).await.is_err() {
        violation("the client never left".into());
    }
}

async fn send(sink: &Sink, message: Message) -> Result<(), ()> {
    sink.lock().await.send(message).await.map_err(|_| ())
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn build_frame(
    shared: &Shared,
    enc: Enc,
    gzip: bool,
    messages: Vec<BaseMessage>,
) -> (Vec<u8>, Sent) {
    let log_id = shared.update(|s| {
        s.next_log_id += 1;
        s.next_log_id
    });
    let now = now_ms();
    let cursor = format!("{now}_{log_id}_1_1_0_0");
    let internal_ext = format!(
        "fetch_time:{now}|start_time:0|flag:0|seq:{log_id}|next_cursor:{cursor}|wss_info:0-{now}-0-0"
    );
    let msg_ids = messages.iter().map(|m| m.msg_id).collect();
    let result = FetchResult {
        messages,
        cursor: cursor.clone(),
        fetch_interval: 1000,
        now,
        internal_ext: internal_ext.clone(),
        need_ack: true,
        ..Default::default()
    }
    .encode_to_vec();
    let header = |value: &str| {
        vec![HeaderEntry {
            key: "compress_type".into(),
            value: value.into(),
        }]
    };
    let (headers, payload, sent_enc) = match (enc, gzip) {
        (Enc::Auto, true) => (header("gzip"), gzip_bytes(&result), FrameEnc::Gzip),
        (Enc::GzipNoHeader, true) => (Vec::new(), gzip_bytes(&result), FrameEnc::GzipNoHeader),
        (Enc::CorruptGzip, _) => {
            let mut junk = vec![0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff];
            junk.extend_from_slice(b"this is not deflate data at all");
            (header("gzip"), junk, FrameEnc::CorruptGzip)
        }
        (Enc::Auto | Enc::Plain | Enc::GzipNoHeader, _) => {
            (header("none"), result, FrameEnc::Plain)
        }
    };
    let decodable = sent_enc != FrameEnc::CorruptGzip;
    let frame = PushFrame {
        seq_id: log_id % 1000,
        log_id,
        service: 8888,
        method: 8,
        headers,
        payload_encoding: "pb".into(),
        payload_type: "msg".into(),
        payload: payload.into(),
    };
    let sent = Sent {
        log_id,
        enc: sent_enc,
        ack: decodable.then_some(internal_ext),
        cursor: decodable.then_some(cursor),
        msg_ids,
    };
    (frame.encode_to_vec(), sent)
}

/// The cursor of a whole frame the mock was given as bytes, when it decodes.
fn decoded_cursor(bytes: &[u8]) -> Option<String> {
    let frame = PushFrame::decode(bytes).ok()?;
    if frame.payload_type != "msg" {
        return None;
    }
    let payload = tiklive::protocol::frame_payload(&frame).ok()?;
    let result = FetchResult::decode(payload).ok()?;
    (!result.cursor.is_empty()).then_some(result.cursor)
}
