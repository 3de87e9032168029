//! Browser tests of the dashboard of `tiklive serve`: headless Chromium (tests/support/browser.rs)
//! drives the real page served by the real binary, which watches the loopback TikTok mock. They state
//! what a seller sees and does: a claim arrives in the chat, hostile nicknames stay text, a click on the
//! claim makes a sale that the API then holds, and the page fits a phone.

mod support;

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::api::Server;
use support::browser::{Browser, WAIT, js_string};
use support::http::{read_request, respond};
use support::*;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

// ---------------------------------------------------------------------------------------------------
// The driver itself, against a page of its own

/// Serves fixed pages on a loopback port until the returned runtime is dropped.
fn serve_pages(pages: Vec<(&'static str, &'static str, String)>) -> (Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("page server runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let pages = pages.clone();
            tokio::spawn(async move {
                let Ok(Some(request)) = read_request(&mut stream).await else {
                    return;
                };
                let page = pages.iter().find(|(path, _, _)| *path == request.path);
                let _ = match page {
                    Some((_, mime, body)) => {
                        respond(
                            &mut stream,
                            200,
                            &[("Content-Type", mime.to_string())],
                            body.as_bytes(),
                        )
                        .await
                    }
                    None => respond(&mut stream, 404, &[], b"not found").await,
                };
            });
        }
    });
    (runtime, url)
}

const DRIVER_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>driver</title></head>
<body>
  <input id="name">
  <button id="go" style="margin-top: 1500px">Go</button>
  <p id="out"></p>
  <script>
    document.getElementById('go').addEventListener('click', (e) => {
      document.getElementById('out').textContent =
        'hello ' + document.getElementById('name').value + (e.isTrusted ? ' (trusted)' : '');
    });
  </script>
</body></html>"#;

/// The driver types, clicks an element below the fold with real (trusted) mouse events, awaits
/// promises, reports a JavaScript dialog instead of hanging on it, and saves a PNG.
#[test]
fn the_browser_driver_types_clicks_evaluates_and_captures() {
    let Some(mut browser) = Browser::launch("browser-driver") else {
        return;
    };
    let (_server, url) = serve_pages(vec![("/", "text/html; charset=utf-8", DRIVER_PAGE.into())]);
    browser.goto(&format!("{url}/"));
    assert_eq!(browser.eval("document.title"), "driver");
    browser.type_into("#name", "Camille 🛍️");
    browser.click("#go");
    let out = browser.wait_until(
        "the click handler's text",
        "document.getElementById('out').textContent",
        WAIT,
    );
    assert_eq!(out, "hello Camille 🛍️ (trusted)");
    assert_eq!(
        browser.eval("new Promise(r => setTimeout(() => r(6 * 7), 50))"),
        42
    );
    browser.eval("setTimeout(() => alert('from the page'), 0); 1");
    std::thread::sleep(Duration::from_millis(200));
    browser.eval("1");
    assert_eq!(browser.dialogs(), ["\"alert\": \"from the page\""]);
    let shot = browser.screenshot("driver");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    assert!(
        png.len() > 1000,
        "{} is only {} bytes",
        shot.display(),
        png.len()
    );
    let missing = browser
        .try_wait_until(
            "something that never comes",
            "document.querySelector('#nope')",
            Duration::from_millis(300),
        )
        .expect_err("waiting for a missing element fails");
    assert!(
        missing.contains("something that never comes") && missing.contains("hello Camille"),
        "the failure shows what was awaited and the page's text: {missing}"
    );
}

// ---------------------------------------------------------------------------------------------------
// The dashboard, served by the real `tiklive serve` watching the mock

/// The API token the server is started with; the dashboard gets it from the URL fragment.
const TOKEN: &str = "dash-test-token-4f1d9c";
/// A nickname that would run script if the dashboard parsed it as HTML.
const HOSTILE_NICKNAME: &str = "<img src=x onerror=alert(1)>";
/// A comment that would set the canary if the dashboard parsed it as HTML.
const HOSTILE_COMMENT: &str =
    "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2; alert(2)\">";

/// `tiklive serve` for the dashboard: following @seller, with the API token. The mock goes quiet once
/// its script is done, so the live must not be declared dead while the test looks.
fn serve(mock: &Mock, dir: &std::path::Path) -> (Server, ServerLog) {
    let mut server = Server::start(
        mock,
        dir,
        &[
            "--user",
            "seller",
            "--api-token",
            TOKEN,
            "--dead-after",
            "300s",
        ],
    );
    server.token = Some(TOKEN.to_owned());
    let log = ServerLog::drain(&mut server);
    (server, log)
}

/// The server's stderr, read as it comes (so it never blocks on a full pipe) and shown when the test
/// fails.
struct ServerLog(Arc<Mutex<String>>);

impl ServerLog {
    fn drain(server: &mut Server) -> ServerLog {
        let text = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = server.child.stderr.take() {
            let text = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut text = text.lock().unwrap_or_else(|e| e.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        ServerLog(text)
    }
}

impl Drop for ServerLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.0.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- tiklive serve stderr ---\n{text}");
        }
    }
}

/// `document.querySelector(selector)` in page JavaScript.
fn query(selector: &str) -> String {
    format!("document.querySelector({})", js_string(selector))
}

/// A seller opens the dashboard with the token link, sees the live and its chat, a claim arrives from a
/// viewer with a hostile nickname and stays plain text, the seller turns it into a sale of two at
/// 12.50, confirms it, and the API holds exactly that sale; after the dashboard's own WebSocket drops,
/// it comes back with the same chat and sales; on a phone the chat and the sales fit the screen.
#[test]
fn a_claim_in_the_chat_becomes_a_sale_from_the_dashboard() {
    let Some(mut browser) = Browser::launch("dashboard") else {
        return;
    };
    let started = Instant::now();
    let (buyer, fan) = (
        viewer(6_900_000_000_000_000_666, HOSTILE_NICKNAME, "evil.buyer"),
        fan(),
    );
    let mut m = Messages::new(ROOM_ID);
    let hello = m.chat(&fan, "bonjour !");
    let claim = m.chat(&buyer, "JP A12 M");
    let hostile = m.chat(&fan, HOSTILE_COMMENT);
    let rose = m.gift(&fan, &rose(), 3, true, 1_767_225_600_123);
    let mock = Mock::start(
        Scenario::default()
            .history(vec![hello.clone()])
            .script(vec![
                Step::WaitRelease,
                Step::frame(vec![claim.clone(), hostile.clone(), rose.clone()]),
                Step::Silence,
            ]),
    );
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = serve(&mock, dir.path());
    let url = format!("http://{}", server.api);
    let server_ready = started.elapsed();

    // The token link: the dashboard keeps the token and takes it out of the address bar.
    browser.goto(&format!("{url}/#token={TOKEN}"));
    browser.wait_until(
        "the dashboard's WebSocket to be synced",
        &format!("{}?.dataset.state === 'live'", query("#conn")),
        WAIT,
    );
    assert_eq!(browser.eval("location.hash"), "");
    assert_eq!(browser.eval("localStorage.getItem('tiklive.token')"), TOKEN);
    browser.wait_until(
        "@seller connected in the status",
        &query("#status .live[data-username='seller'][data-state='connected']"),
        WAIT,
    );
    let title = browser.wait_for("#status .live[data-username='seller'] .live-title:not([hidden])");
    assert_eq!(title, room_title(ROOM_ID).trim());
    let hello_line = browser.wait_for(&format!(".chat-line[data-msg-id='{}']", hello.msg_id));
    assert!(
        hello_line.contains("bonjour !") && hello_line.contains("Léa"),
        "{hello_line}"
    );
    let dashboard_ready = started.elapsed();

    // The claim arrives live.
    mock.release();
    let claim_line = format!(".chat-line.claim[data-msg-id='{}']", claim.msg_id);
    browser.wait_for(&claim_line);
    browser.wait_for(&format!(".chat-line.gift[data-msg-id='{}']", rose.msg_id));
    let hostile_line = format!(".chat-line[data-msg-id='{}']", hostile.msg_id);
    browser.wait_for(&hostile_line);
    let claim_arrived = started.elapsed();
    // The live's counters follow the server's status messages.
    let seller = "#status .live[data-username='seller']";
    browser.wait_until(
        "the claim and the gift counted in the status",
        &format!(
            "{}.textContent === '1' && {}.textContent.startsWith('1 · 3')",
            query(&format!("{seller} [data-field='claims']")),
            query(&format!("{seller} [data-field='gifts']")),
        ),
        WAIT,
    );
    let seen = browser.eval(&format!(
        "(() => {{
            const claim = {claim}, hostile = {hostile};
            return {{
                nick: claim.querySelector('.nick').textContent,
                comment: claim.querySelector('.text').textContent,
                badge: claim.querySelector('.claim-badge').textContent,
                hostile: hostile.querySelector('.text').textContent,
                imgs_in_lines: claim.querySelectorAll('img').length + hostile.querySelectorAll('img').length,
                img_x: document.querySelectorAll('img[src=\"x\"]').length,
                scripts: document.scripts.length,
                xss: window.__xss === undefined ? null : window.__xss,
                order: [...document.querySelectorAll('#chat .chat-line')].map(l => l.dataset.msgId),
            }};
        }})()",
        claim = query(&claim_line),
        hostile = query(&hostile_line),
    ));
    assert_eq!(
        seen["nick"], HOSTILE_NICKNAME,
        "the nickname is shown as text: {seen}"
    );
    assert_eq!(seen["comment"], "JP A12 M");
    assert_eq!(seen["badge"], "JP A12 · M");
    assert_eq!(
        seen["hostile"], HOSTILE_COMMENT,
        "the comment is shown as text: {seen}"
    );
    assert_eq!(
        seen["imgs_in_lines"], 0,
        "no element was made from viewer text: {seen}"
    );
    assert_eq!(seen["img_x"], 0, "{seen}");
    assert_eq!(seen["scripts"], 1, "only app.js: {seen}");
    assert_eq!(
        seen["xss"],
        Value::Null,
        "viewer text ran as script: {seen}"
    );
    let order: Vec<String> = [&hello, &claim, &hostile, &rose]
        .iter()
        .map(|m| m.msg_id.to_string())
        .collect();
    assert_eq!(
        seen["order"],
        serde_json::json!(order),
        "oldest first, newest at the bottom"
    );

    // The seller clicks the claim: the form is prefilled from it.
    browser.click(&claim_line);
    browser.wait_until(
        "the sale form to open",
        &format!("{}.open", query("#sale-dialog")),
        WAIT,
    );
    let form = browser.eval(
        "(() => { const f = (name) => document.querySelector('#sale-form').elements.namedItem(name).value;
            return {message_id: f('message_id'), item: f('item'), variant: f('variant'),
                    quantity: f('quantity'), claim: document.querySelector('#sale-claim').textContent}; })()",
    );
    assert_eq!(form["message_id"], claim.msg_id.to_string());
    assert_eq!(form["item"], "A12");
    assert_eq!(form["variant"], "M");
    assert_eq!(form["quantity"], "1");
    assert!(
        form["claim"].as_str().unwrap().contains(HOSTILE_NICKNAME),
        "{form}"
    );
    browser.type_into("#sale-form [name=quantity]", "2");
    browser.type_into("#sale-form [name=price]", "12.50");
    browser.type_into("#sale-form [name=note]", "blue bag");
    browser.click("#sale-submit");
    browser.wait_until(
        "the sale form to close",
        &format!("!{}.open", query("#sale-dialog")),
        WAIT,
    );
    let sale_row = format!("#sales .sale[data-msg-id='{}']", claim.msg_id);
    let row = browser.wait_for(&sale_row);
    for part in [
        "A12",
        "M",
        "×2",
        "25.00 EUR",
        HOSTILE_NICKNAME,
        "@evil.buyer",
        "pending",
        "blue bag",
    ] {
        assert!(row.contains(part), "the sale shows {part:?}: {row}");
    }
    browser.wait_for(&format!("{claim_line}.has-sale"));
    let sale_id = browser.eval(&format!("Number({}.dataset.saleId)", query(&sale_row)));
    let sale_made = started.elapsed();

    // The API holds the sale the seller made.
    let sales = server.get("/sales").json();
    let sales = sales["sales"].as_array().expect("a list of sales");
    assert_eq!(sales.len(), 1, "{sales:?}");
    let sale = &sales[0];
    assert_eq!(sale["id"], sale_id);
    assert_eq!(sale["msg_id"], claim.msg_id.to_string());
    assert_eq!(sale["room_id"], ROOM_ID.to_string());
    assert_eq!(sale["buyer_id"], buyer.id.to_string());
    assert_eq!(sale["unique_id"], "evil.buyer");
    assert_eq!(sale["nickname"], HOSTILE_NICKNAME);
    assert_eq!(sale["item"], "A12");
    assert_eq!(sale["variant"], "M");
    assert_eq!(sale["quantity"], 2);
    assert_eq!(sale["unit_price"], "12.50");
    assert_eq!(sale["total"], "25.00");
    assert_eq!(sale["status"], "pending");
    assert_eq!(sale["note"], "blue bag");

    // A second sale from the same message needs the seller's explicit choice: the server's 409
    // message is shown with a button to force it, and nothing is created meanwhile.
    browser.click(&claim_line);
    browser.wait_until(
        "the sale form to open again",
        &format!("{}.open", query("#sale-dialog")),
        WAIT,
    );
    browser.type_into("#sale-form [name=price]", "12.50");
    browser.click("#sale-submit");
    browser.wait_for("#sale-force:not([hidden])");
    let error = browser.eval(&format!("{}.textContent", query("#sale-error")));
    assert!(
        error.as_str().is_some_and(|e| !e.is_empty()),
        "the server's reason is shown: {error}"
    );
    browser.click("#sale-cancel");
    browser.wait_until(
        "the sale form to close",
        &format!("!{}.open", query("#sale-dialog")),
        WAIT,
    );
    assert_eq!(
        server.get("/sales").json()["sales"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Confirming it goes through the API and back through the WebSocket.
    browser.click(&format!("{sale_row} [data-action='confirmed']"));
    browser.wait_for(&format!("{sale_row}[data-status='confirmed']"));
    assert_eq!(
        server.get("/sales?status=confirmed").json()["sales"][0]["id"],
        sale_id
    );

    // Without the token (another browser, or it was cleared) the page asks for it, then carries on:
    // the chat comes from the WebSocket's sync, the sales from GET /sales.
    browser.eval("localStorage.clear()");
    browser.reload();
    browser.wait_for("#auth:not([hidden]) #token-input");
    assert_eq!(
        browser.eval(&format!("{}.dataset.state", query("#conn"))),
        "auth"
    );
    browser.type_into("#token-input", TOKEN);
    browser.click("#auth button[type=submit]");
    browser.wait_until(
        "the dashboard to be synced with the typed token",
        &format!("{}.dataset.state === 'live'", query("#conn")),
        WAIT,
    );
    browser.wait_for(&format!("{claim_line}.has-sale"));
    browser.wait_for(&format!("{sale_row}[data-status='confirmed']"));

    // The dashboard's WebSocket drops: it reconnects and rebuilds the same chat and sales.
    let syncs = browser.eval("state.syncs");
    browser.eval("state.ws.close(); 1");
    browser.wait_until(
        "the dashboard to reconnect and sync again",
        &format!(
            "state.syncs > {syncs} && {}.dataset.state === 'live'",
            query("#conn")
        ),
        WAIT,
    );
    browser.wait_for(&format!("{sale_row}[data-status='confirmed']"));
    let after = browser.eval(&format!(
        "({{ claims: document.querySelectorAll({claim}).length,
            lines: document.querySelectorAll('#chat .chat-line').length,
            sales: document.querySelectorAll('#sales .sale').length }})",
        claim = js_string(&claim_line)
    ));
    assert_eq!(
        after,
        serde_json::json!({"claims": 1, "lines": 4, "sales": 1}),
        "after the resync"
    );

    let desktop = browser.screenshot("desktop");

    // A phone: one column, nothing wider than the screen.
    browser.set_viewport(390, 844, true);
    browser.wait_until("the phone layout", "innerWidth === 390", WAIT);
    let phone = browser.screenshot_full_page("phone");
    let layout = browser.eval(
        "(() => {
            const box = (s) => { const r = document.querySelector(s).getBoundingClientRect();
                return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height}; };
            return {scroll_width: document.documentElement.scrollWidth, width: innerWidth,
                    chat: box('#chat'), sales: box('#sales-pane'), sale: box('#sales .sale')};
        })()",
    );
    let width = layout["width"].as_f64().unwrap();
    assert!(
        layout["scroll_width"].as_f64().unwrap() <= width,
        "the page scrolls sideways on a phone: {layout}"
    );
    for pane in ["chat", "sales", "sale"] {
        let b = &layout[pane];
        assert!(
            b["width"].as_f64().unwrap() > 200.0
                && b["height"].as_f64().unwrap() > 20.0
                && b["left"].as_f64().unwrap() >= 0.0
                && b["right"].as_f64().unwrap() <= width,
            "{pane} is not fully visible across a 390px screen: {layout}"
        );
    }
    assert!(
        layout["sales"]["top"].as_f64().unwrap() >= layout["chat"]["bottom"].as_f64().unwrap(),
        "the sales are stacked under the chat: {layout}"
    );

    // The seller follows another account from the field, and stops following @seller: both through
    // the API, both shown from the status the server sends back.
    browser.type_into("#connect-username", "@other.shop");
    browser.click("#connect-form button[type=submit]");
    browser.wait_for("#status .live[data-username='other.shop']");
    // The card can come from the feed's status before the POST's answer empties the field.
    browser.wait_until(
        "the field to be emptied once the server accepted",
        &format!("{}.value === ''", query("#connect-username")),
        Duration::from_secs(10),
    );
    // An account that does not exist: the server's reason is shown on its card.
    let other = browser.wait_for(
        "#status .live[data-username='other.shop'][data-state='disconnected'] .live-error:not([hidden])",
    );
    assert!(!other.is_empty(), "no reason shown for @other.shop");
    let cards = browser
        .eval("[...document.querySelectorAll('#status .live')].map(l => l.dataset.username)");
    assert_eq!(
        cards,
        serde_json::json!(["seller", "other.shop"]),
        "a new live goes last"
    );
    browser.click(&format!("{seller} .live-action[data-action='disconnect']"));
    let disconnected = browser.wait_for(&format!(
        "{seller}[data-state='disconnected'] .live-action[data-action='connect']"
    ));
    assert_eq!(disconnected, "Connect");
    assert_eq!(
        server.get("/status").json()["lives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["username"] == "seller")
            .map(|l| l["state"].clone()),
        Some(Value::from("disconnected"))
    );

    assert_eq!(
        browser.dialogs(),
        &[] as &[String],
        "the page opened a dialog"
    );
    let errors: Vec<&String> = browser
        .console()
        .iter()
        .filter(|l| l.starts_with("uncaught"))
        .collect();
    assert!(
        errors.is_empty(),
        "uncaught exceptions in the page: {errors:?}"
    );

    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "tiklive serve on SIGTERM\n{out}");
    println!(
        "timings: server healthy {server_ready:?}, dashboard synced {dashboard_ready:?}, \
         claim shown {claim_arrived:?}, sale made {sale_made:?}, all done {:?}\n\
         screenshots: {} {}",
        started.elapsed(),
        desktop.display(),
        phone.display()
    );
}

/// A second live room, for the account the seller starts following from the dashboard.
const SECOND_ROOM_ID: u64 = 7_400_555_000_111_222_333;

/// The chat shows the newest line at the bottom and follows new lines while the seller is at the
/// bottom; once the seller scrolls up to read, new lines leave the view alone and a button offers to
/// jump down; and however much arrives, the page keeps only the last 500 lines.
#[test]
fn the_chat_follows_new_lines_unless_scrolled_up_and_stays_bounded() {
    let Some(mut browser) = Browser::launch("dashboard-chat") else {
        return;
    };
    let (fan, buyer) = (fan(), buyer());
    let mut m = Messages::new(ROOM_ID);
    let history: Vec<_> = (0..100)
        .map(|i| m.chat(&fan, &format!("history {i}")))
        .collect();
    let live: Vec<_> = (0..5)
        .map(|i| m.chat(&buyer, &format!("live {i}")))
        .collect();
    // The same allocator, so that message ids stay unique across the two rooms, as TikTok's are.
    m.room_id = SECOND_ROOM_ID;
    let flood: Vec<_> = (0..450)
        .map(|i| m.chat(&fan, &format!("flood {i}")))
        .collect();
    let mock = Mock::start(
        Scenario::default()
            .host("second", Host::Live(SECOND_ROOM_ID))
            .history(history.clone())
            .history(Vec::new())
            .script(vec![
                Step::WaitRelease,
                Step::frame(live.clone()),
                Step::Silence,
            ])
            .script(vec![Step::frame(flood.clone()), Step::Silence]),
    );
    let dir = tempfile::tempdir().unwrap();
    let (server, _log) = serve(&mock, dir.path());
    browser.goto(&format!("http://{}/#token={TOKEN}", server.api));

    let chat_state = "(() => {
        const chat = document.querySelector('#chat');
        const lines = chat.querySelectorAll('.chat-line');
        return {
            lines: lines.length,
            first: lines[0] && lines[0].dataset.msgId,
            last: lines[lines.length - 1] && lines[lines.length - 1].dataset.msgId,
            at_bottom: chat.scrollHeight - chat.scrollTop - chat.clientHeight < 2,
            scrolled: chat.scrollHeight > chat.clientHeight,
            jump: !document.querySelector('#chat-jump').hidden,
        };
    })()";
    let last_is = |id: u64| format!("{chat_state}.last === '{id}'");

    // The synced history: the newest line is at the bottom, in view.
    browser.wait_until(
        "the history in the chat",
        &last_is(history[99].msg_id),
        WAIT,
    );
    let synced = browser.eval(chat_state);
    assert_eq!(synced["lines"], 100, "{synced}");
    assert_eq!(
        synced["scrolled"], true,
        "the test needs a chat that scrolls"
    );
    assert_eq!(synced["at_bottom"], true, "{synced}");

    // Live lines while at the bottom: the chat follows them.
    mock.release();
    browser.wait_until("the live lines", &last_is(live[4].msg_id), WAIT);
    browser.wait_until(
        "the chat to follow the live lines",
        &format!("{chat_state}.at_bottom"),
        WAIT,
    );
    assert_eq!(browser.eval(chat_state)["jump"], false);

    // The seller scrolls up, then a second live floods the chat.
    browser.eval("document.querySelector('#chat').scrollTop = 0; 1");
    browser.type_into("#connect-username", "second");
    browser.click("#connect-form button[type=submit]");
    browser.wait_until("the flood", &last_is(flood[449].msg_id), WAIT);
    let flooded = browser.eval(chat_state);
    assert_eq!(flooded["lines"], 500, "the chat keeps 500 lines: {flooded}");
    // 555 lines came: the 55 oldest went.
    assert_eq!(
        flooded["first"],
        history[55].msg_id.to_string(),
        "{flooded}"
    );
    assert_eq!(
        flooded["at_bottom"], false,
        "the view stayed where the seller was: {flooded}"
    );
    assert_eq!(
        flooded["jump"], true,
        "a button offers the new lines: {flooded}"
    );

    // Two lives: each line says whose it is.
    let tags = browser.eval(&format!(
        "['{}', '{}'].map(id => document.querySelector(`.chat-line[data-msg-id='${{id}}'] .live-tag`).textContent)",
        history[99].msg_id, flood[449].msg_id
    ));
    assert_eq!(tags, serde_json::json!(["@seller", "@second"]));

    browser.click("#chat-jump");
    browser.wait_until(
        "the chat at the newest line after the jump",
        &format!("{chat_state}.at_bottom && !{chat_state}.jump"),
        WAIT,
    );
    browser.screenshot("chat");
    let errors: Vec<&String> = browser
        .console()
        .iter()
        .filter(|l| l.starts_with("uncaught"))
        .collect();
    assert!(
        errors.is_empty(),
        "uncaught exceptions in the page: {errors:?}"
    );
}

/// "Connect TikTok" from the dashboard, in the browser: the button (its link carries the API token),
/// TikTok's consent page (the strict mock provider redirects back at once), the callback with the
/// browser's own cookie, and the dashboard again, now listing the account with its handle, scopes
/// and expiry.
#[test]
fn connect_tiktok_from_the_dashboard_lists_the_account() {
    let Some(mut browser) = Browser::launch("dashboard-oauth") else {
        return;
    };
    let provider = support::oauth::OAuthMock::start(support::oauth::Provider {
        redirect_uri: "http://localhost:*/callback/".into(),
        ..support::oauth::Provider::default()
    });
    let mock = Mock::start(Scenario::default());
    let dir = tempfile::tempdir().unwrap();
    let (mut cmd, port, ws_port) = support::api::serve_command(
        &mock,
        dir.path(),
        &["--api-token", TOKEN, "--dead-after", "300s"],
    );
    cmd.env("TIKTOK_CLIENT_KEY", support::oauth::CLIENT_KEY)
        .env("TIKTOK_CLIENT_SECRET", support::oauth::CLIENT_SECRET)
        .env(
            "TIKTOK_REDIRECT_URI",
            format!("http://localhost:{port}/callback/"),
        )
        .env("TIKLIVE_AUTH_URL", &provider.url)
        .env("TIKLIVE_OPEN_API_URL", &provider.url);
    let mut server = Server {
        child: cmd.spawn().unwrap(),
        api: ([127, 0, 0, 1], port).into(),
        feed: ([127, 0, 0, 1], ws_port).into(),
        token: Some(TOKEN.to_owned()),
        tls_root: None,
    };
    server.wait_healthy();
    let _log = ServerLog::drain(&mut server);

    browser.goto(&format!("http://localhost:{port}/#token={TOKEN}"));
    browser.wait_until(
        "the Connect TikTok button",
        &format!("!{}.hidden", query("#oauth-connect")),
        WAIT,
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('.account').length"),
        0
    );
    browser.click("#oauth-connect");
    browser.wait_until(
        "the account after TikTok's consent",
        "document.querySelector('.account .handle')?.textContent === '@shop.fr'",
        WAIT,
    );
    let note = browser.eval(&format!("{}.textContent", query("#accounts-note")));
    assert_eq!(note, "Connected @shop.fr");
    let account = browser.eval(&format!("{}.textContent", query(".account")));
    let account = account.as_str().unwrap();
    assert!(
        account.contains("La Boutique") && account.contains("user.info.basic"),
        "{account}"
    );
    assert!(account.contains("Token until"), "{account}");
    // The fragment was read once and removed; the token stays out of the address bar.
    assert_eq!(browser.eval("location.hash"), "");
    browser.screenshot("accounts");
    let listed = server.get("/accounts").json();
    assert_eq!(listed["accounts"][0]["username"], "shop.fr");
    let out = server.terminate();
    assert_eq!(out.code(), Some(0), "{out}");
}
