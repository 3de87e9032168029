//! The HTTP peers: TikTok's web site (live page with SIGI_STATE, api-live), its webcast API (room info)
//! and the signing service's connect route, each answering as PROTOCOL.md §1.3–§1.5 describes and
//! recording a violation for any request the real service would not take.

use std::sync::Arc;

use prost::Message as _;
use tiklive::protocol::{FetchResult, HeaderEntry};
use tokio::net::TcpStream;

use super::super::http::{Request, read_request, respond};
use super::{Host, HttpRecord, Role, Shared, SignMode, Signing, now_ms, token};

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

fn json(status: u16, value: serde_json::Value) -> Answer {
    (
        status,
        vec![("Content-Type", "application/json".into())],
        value.to_string().into_bytes(),
    )
}

pub(super) async fn serve_http(shared: Arc<Shared>, role: Role, mut stream: TcpStream) {
    let request = match read_request(&mut stream).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            shared.violation(format!("{role:?}: unreadable request: {e}"));
            return;
        }
    };
    let (status, headers, body) = if request.method != "GET" {
        shared.violation(format!(
            "{role:?}: {} {} (only GET is used)",
            request.method, request.path
        ));
        (405, Vec::new(), Vec::new())
    } else {
        if !request.tail.is_empty() {
            shared.violation(format!("{role:?}: a GET with a body: {}", request.path));
        }
        match role {
            Role::Web => web(&shared, &request),
            Role::Webcast => webcast(&shared, &request),
            Role::Sign => sign(&shared, &request),
        }
    };
    shared.update(|s| {
        s.requests.push(HttpRecord {
            role,
            request,
            status,
        })
    });
    let _ = respond(&mut stream, status, &headers, &body).await;
}

/// TikTok serves captcha pages to clients that do not look like a browser (§1.1).
fn check_browser_identity(shared: &Shared, role: Role, request: &Request) {
    let ua = request.header("user-agent").unwrap_or("");
    if !ua.starts_with("Mozilla/5.0") {
        shared.violation(format!(
            "{role:?} {}: User-Agent {ua:?} is not a browser's",
            request.path
        ));
    }
    for problem in session_cookie_problems(shared, &request.cookies()) {
        shared.violation(format!("{role:?} {}: {problem}", request.path));
    }
}

/// What is wrong with the cookies of a request to TikTok: the data centre must be `useast1a`, or the
/// account's for a logged-in client, which must also send its session as `sessionid`, `sessionid_ss`
/// and `sid_tt`.
pub(super) fn session_cookie_problems(
    shared: &Shared,
    cookies: &[(String, String)],
) -> Vec<String> {
    let cookie = |name: &str| {
        cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut problems = Vec::new();
    let (want_idc, session) = match &shared.scenario.session {
        Some((id, idc)) => (idc.as_str(), Some(id.as_str())),
        None => ("useast1a", None),
    };
    if cookie("tt-target-idc") != Some(want_idc) {
        problems.push(format!(
            "Cookie lacks tt-target-idc={want_idc}: {cookies:?}"
        ));
    }
    for name in ["sessionid", "sessionid_ss", "sid_tt"] {
        if cookie(name) != session {
            problems.push(format!(
                "cookie {name} is {:?}, expected {session:?}",
                cookie(name)
            ));
        }
    }
    problems
}

fn web(shared: &Shared, request: &Request) -> Answer {
    if shared.scenario.forbid_web {
        shared.violation(format!(
            "web request {} although the room id was given",
            request.path
        ));
    }
    check_browser_identity(shared, Role::Web, request);
    let path = request.path.as_str();
    if let Some(user) = path
        .strip_prefix("/@")
        .and_then(|p| p.strip_suffix("/live"))
    {
        return live_page(shared.host_of_user(user), user);
    }
    if path == "/api-live/user/room/" {
        let (Some("1988"), Some(user), Some("54")) = (
            request.param("aid"),
            request.param("uniqueId"),
            request.param("sourceType"),
        ) else {
            shared.violation(format!(
                "api-live without aid=1988, uniqueId and sourceType=54: {:?}",
                request.query
            ));
            return json(
                200,
                serde_json::json!({"statusCode": 10011, "message": "params_error"}),
            );
        };
        return api_live(shared.host_of_user(user), user);
    }
    shared.violation(format!("web: unexpected path {path}"));
    (404, Vec::new(), b"Not Found".to_vec())
}

fn live_page(host: Host, user: &str) -> Answer {
    if let Host::Unavailable(..) = host {
        return unavailable();
    }
    let sigi = |state: serde_json::Value| {
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><title>{user} is LIVE | TikTok</title></head><body>\
             <div id=\"app\"></div><script id=\"SIGI_STATE\" type=\"application/json\">{state}</script>\
             </body></html>"
        )
    };
    let room = |room_id: u64, status: u64| {
        serde_json::json!({
            "AppContext": {"appContext": {"language": "en"}},
            "LiveRoom": {"liveRoomUserInfo": {
                "user": {"id": "6809568862012081157", "uniqueId": user, "roomId": room_id.to_string(), "status": status},
                "liveRoom": {"roomId": room_id.to_string(), "status": status, "title": room_title(room_id)}
            }}
        })
    };
    let html = match host {
        Host::Live(r) => sigi(room(r, 2)),
        // `LiveAfter` is resolved to `Live` or `Offline` by `host_of_user`.
        Host::Offline(r) | Host::LiveAfter(r, _) => sigi(room(r, 4)),
        Host::Unavailable(..) => unreachable!("answered above"),
        Host::Unknown => sigi(serde_json::json!({"AppContext": {"appContext": {"language": "en"}}})),
        Host::BlockedPage(_) => "<!DOCTYPE html><html><body><div id=\"tiktok-verify-page\">Verify to continue</div></body></html>".into(),
    };
    (
        200,
        vec![("Content-Type", "text/html; charset=utf-8".into())],
        html.into_bytes(),
    )
}

/// TikTok's web front failing for a while.
fn unavailable() -> Answer {
    (
        503,
        vec![("Content-Type", "text/plain".into())],
        b"Service Unavailable".to_vec(),
    )
}

fn api_live(host: Host, user: &str) -> Answer {
    if let Host::Unavailable(..) = host {
        return unavailable();
    }
    let room = |room_id: u64, status: u64| {
        serde_json::json!({
            "statusCode": 0,
            "message": "",
            "data": {
                "user": {"id": "6809568862012081157", "uniqueId": user, "nickname": user, "roomId": room_id.to_string(), "status": status},
                "liveRoom": {"status": status, "title": room_title(room_id), "liveRoomStats": {"userCount": 120}}
            }
        })
    };
    json(
        200,
        match host {
            Host::Live(r) | Host::BlockedPage(r) => room(r, 2),
            Host::Offline(r) | Host::LiveAfter(r, _) => room(r, 4),
            Host::Unavailable(..) => unreachable!("answered above"),
            Host::Unknown => {
                serde_json::json!({"statusCode": 19881007, "message": "user_not_found"})
            }
        },
    )
}

fn webcast(shared: &Shared, request: &Request) -> Answer {
    check_browser_identity(shared, Role::Webcast, request);
    if request.path != "/webcast/room/info/" {
        shared.violation(format!("webcast: unexpected path {}", request.path));
        return (404, Vec::new(), b"Not Found".to_vec());
    }
    let room_id = request.param("room_id").and_then(|r| r.parse::<u64>().ok());
    let (Some("1988"), Some(room_id)) = (request.param("aid"), room_id) else {
        shared.violation(format!(
            "room info without aid=1988 and room_id: {:?}",
            request.query
        ));
        return json(
            200,
            serde_json::json!({"data": {"message": "Request params error", "prompts": "Request params error"}, "status_code": 10011}),
        );
    };
    let seen = shared.lock().requests(Role::Webcast).len();
    let ended = shared.scenario.live_room_infos.is_some_and(|n| seen >= n);
    let status = match shared.host_of_room(room_id) {
        Some(Host::Offline(_)) => 4,
        Some(_) if ended => 4,
        Some(_) => 2,
        None => {
            return json(
                200,
                serde_json::json!({"data": {"prompts": ""}, "extra": {"now": now_ms()}, "status_code": 4003110}),
            );
        }
    };
    json(
        200,
        serde_json::json!({"data": {"id_str": room_id.to_string(), "status": status, "title": room_title(room_id), "user_count": 120}, "extra": {"now": now_ms()}, "status_code": 0}),
    )
}

/// The title a room's host gave it: padded with spaces and with an emoji, as hosts write them.
pub fn room_title(room_id: u64) -> String {
    format!(" Vente live 🛍️ n°{} ", room_id % 1000)
}

fn sign(shared: &Shared, request: &Request) -> Answer {
    let room_id = request
        .path
        .strip_prefix("/webcast/rooms/")
        .and_then(|p| p.strip_suffix("/connect"))
        .and_then(|r| r.parse::<u64>().ok());
    let Some(room_id) = room_id else {
        shared.violation(format!("sign: unexpected path {}", request.path));
        return json(404, serde_json::json!({"message": "Not found"}));
    };
    let mut record = Signing {
        room_id,
        cursor_asked: request.param("cursor").unwrap_or("").into(),
        user_agent: request.param("user_agent").unwrap_or("").into(),
        api_key: request.header("x-api-key").map(str::to_owned),
        cookie_header: request.header("x-cookie-header").map(str::to_owned),
        ..Default::default()
    };
    let answer = sign_answer(shared, request, room_id, &mut record);
    record.status = answer.0;
    shared.update(|s| s.signings.push(record));
    answer
}

fn sign_answer(shared: &Shared, request: &Request, room_id: u64, record: &mut Signing) -> Answer {
    let p = |name| request.param(name);
    if p("client").is_none_or(str::is_empty)
        || p("cursor").is_none()
        || p("client_enter") != Some("true")
        || p("platform") != Some("web")
        || !record.user_agent.starts_with("Mozilla/5.0")
    {
        shared.violation(format!("sign: bad connect parameters {:?}", request.query));
        return json(
            400,
            serde_json::json!({"message": "Missing or invalid parameters"}),
        );
    }
    if let Some(key) = &shared.scenario.api_key
        && record.api_key.as_deref() != Some(key)
    {
        return json(
            401,
            serde_json::json!({"message": "Invalid or missing API key"}),
        );
    }
    let index = shared.lock().signings.len();
    let plan = &shared.scenario.sign;
    let mode = plan
        .get(index)
        .or(plan.last())
        .copied()
        .unwrap_or(SignMode::Normal);
    if let SignMode::RateLimited { retry_after } = mode {
        let (status, mut headers, body) = json(
            429,
            serde_json::json!({"message": "Too many connections started, try again later.", "limit_label": "anon-minute"}),
        );
        headers.push(("retry-after", retry_after.to_string()));
        return (status, headers, body);
    }
    if shared.host_of_room(room_id).is_none() {
        shared.violation(format!("sign: unknown room {room_id}"));
        return json(404, serde_json::json!({"message": "Room not found"}));
    }
    let now = now_ms();
    record.imprp = token(24);
    record.ttwid = format!(
        "1%7C{}%7C{}%7C{}",
        token(43),
        now / 1000,
        token(64).to_lowercase()
    );
    record.chain_token = token(32);
    record.cursor = format!(
        "{now}_{}_1_1_0_0",
        7_391_000_000_000_000_000u64 + index as u64
    );
    record.internal_ext = format!(
        "fetch_time:{now}|start_time:0|flag:0|seq:1|next_cursor:{}|wss_info:0-{now}-0-0",
        record.cursor
    );
    let result = FetchResult {
        messages: shared
            .scenario
            .histories
            .get(index)
            .cloned()
            .unwrap_or_default(),
        cursor: record.cursor.clone(),
        fetch_interval: 1000,
        now,
        internal_ext: record.internal_ext.clone(),
        route_params: vec![HeaderEntry {
            key: "imprp".into(),
            value: record.imprp.clone(),
        }],
        // The sign server's result comes from an HTTP fetch with no frame or log id: never acked.
        need_ack: true,
        push_server: format!("ws://127.0.0.1:{}/webcast/im/push/", shared.ws_port),
        is_first: true,
        ..Default::default()
    };
    let mut result = result;
    if mode == SignMode::NoCursor {
        result.cursor.clear();
    }
    let mut headers = vec![
        ("Content-Type", "application/protobuf".into()),
        ("x-request-id", token(16)),
    ];
    if mode != SignMode::NoCookie {
        headers.push((
            "x-set-tt-cookie",
            format!(
                "ttwid={}; tt_chain_token={}",
                record.ttwid, record.chain_token
            ),
        ));
    }
    (200, headers, result.encode_to_vec())
}
