//! A small headless-Chromium driver for the dashboard's browser tests: it launches Chromium with a fresh
//! profile, speaks the DevTools protocol over its WebSocket (tokio-tungstenite, already a dependency),
//! and offers what a test needs — navigate, evaluate, wait, click, type, resize, screenshot. Every wait
//! has a deadline, and every failure shows the page's text, its console and the dialogs it opened, so a
//! failing browser test says what the user would have seen.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a wait helper waits by default. Generous: four engineers share two cores.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long one DevTools command may take before the test fails.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// How long Chromium may take to print its DevTools address.
const LAUNCH_LIMIT: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The Chromium binary: `chromium` or `chromium-browser` on `PATH`.
pub fn chromium_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Where browser tests write their screenshots: `target/test-output/<test>/`.
pub fn output_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .join("test-output")
        .join(test);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The Chromium process, killed when dropped: from the moment it is spawned, so that a launch that
/// fails half-way leaves no browser behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running headless Chromium with one page open. Dropping it kills the browser.
pub struct Browser {
    // Dropped first: the browser dies before its profile directory is removed.
    child: Process,
    runtime: Runtime,
    socket: Socket,
    /// The DevTools session of the page.
    session: String,
    next_id: u64,
    out_dir: PathBuf,
    /// The messages of the JavaScript dialogs the page opened (each was dismissed).
    dialogs: Vec<String>,
    /// Uncaught exceptions and console output of the page, in order.
    console: Vec<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Launches Chromium with a blank page, writing screenshots to `output_dir(test)`. Without
    /// Chromium: `None` with a message on a developer's machine, a failure under CI (`CI=true`), where
    /// `.ci/run` installs it and a skipped browser test would hide a broken dashboard.
    pub fn launch(test: &str) -> Option<Browser> {
        let Some(binary) = chromium_path() else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "CI=true and no chromium on PATH: the dashboard browser tests cannot run \
                 (.ci/run installs the Debian package chromium)"
            );
            eprintln!(
                "SKIPPED {test}: no chromium on PATH; install it (apt-get install chromium) to run \
                 the dashboard browser tests"
            );
            return None;
        };
        Some(Browser::launch_binary(&binary, test))
    }

    fn launch_binary(binary: &Path, test: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a temp dir for the Chromium profile");
        let mut child = Process(
            Command::new(binary)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--mute-audio",
                    "--window-size=1280,900",
                    "--remote-debugging-port=0",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display())),
        );

        // Chromium announces its DevTools address on stderr; the reader keeps draining stderr (so the
        // browser never blocks on a full pipe) and keeps the last lines for failure messages.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let pipe = child.0.stderr.take().expect("stderr is piped");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("ws://") {
                        let _ = tx.send(line[at..].trim().to_owned());
                    }
                    let mut lines = stderr.lock().unwrap_or_else(|e| e.into_inner());
                    if lines.len() >= 200 {
                        lines.remove(0);
                    }
                    lines.push(line);
                }
            });
        }
        let url = match rx.recv_timeout(LAUNCH_LIMIT) {
            Ok(url) => url,
            Err(_) => {
                drop(child);
                let lines = stderr.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
                panic!(
                    "Chromium printed no DevTools address within {LAUNCH_LIMIT:?}\n\
                     --- chromium stderr ---\n{lines}"
                );
            }
        };

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("browser runtime");
        let socket = runtime
            .block_on(async {
                tokio::time::timeout(CALL_LIMIT, tokio_tungstenite::connect_async(url.as_str()))
                    .await
            })
            .unwrap_or_else(|_| panic!("no DevTools WebSocket handshake with {url}"))
            .unwrap_or_else(|e| panic!("cannot open the DevTools WebSocket {url}: {e}"))
            .0;
        let mut browser = Browser {
            child,
            runtime,
            socket,
            session: String::new(),
            next_id: 0,
            out_dir: output_dir(test),
            dialogs: Vec::new(),
            console: Vec::new(),
            stderr,
            _profile: profile,
        };
        let target = browser.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].clone();
        let attached = browser.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("attachToTarget gives a session id")
            .to_owned();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser
    }

    /// A command to the browser itself (no page session).
    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
            .unwrap_or_else(|e| panic!("DevTools {method}: {e}"))
    }

    /// A command to the page; a protocol error fails the test with the page's state.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        match self.send(Some(&session), method, params) {
            Ok(result) => result,
            Err(e) => panic!("DevTools {method}: {e}\n{}", self.diagnostics()),
        }
    }

    /// Sends one command and reads messages until its answer, handling the events that come first.
    fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        let Browser {
            runtime,
            socket,
            next_id,
            dialogs,
            console,
            ..
        } = self;
        runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + CALL_LIMIT;
            socket
                .send(Message::Text(command.to_string().into()))
                .await
                .map_err(|e| format!("cannot send: {e}"))?;
            loop {
                let message = match tokio::time::timeout_at(deadline, socket.next()).await {
                    Err(_) => return Err(format!("no answer within {CALL_LIMIT:?}")),
                    Ok(None) => return Err("the DevTools WebSocket closed".into()),
                    Ok(Some(Err(e))) => return Err(format!("DevTools WebSocket: {e}")),
                    Ok(Some(Ok(Message::Text(text)))) => text,
                    Ok(Some(Ok(_))) => continue,
                };
                let message: Value = serde_json::from_str(&message)
                    .map_err(|e| format!("DevTools sent something that is not JSON: {e}"))?;
                if message["id"] == id {
                    if let Some(error) = message.get("error") {
                        return Err(error.to_string());
                    }
                    return Ok(message["result"].clone());
                }
                match message["method"].as_str() {
                    // A dialog blocks the page until handled: record it and dismiss it at once.
                    Some("Page.javascriptDialogOpening") => {
                        let params = &message["params"];
                        dialogs.push(format!("{}: {}", params["type"], params["message"]));
                        *next_id += 1;
                        let dismiss = json!({
                            "id": *next_id,
                            "method": "Page.handleJavaScriptDialog",
                            "params": {"accept": false},
                            "sessionId": message["sessionId"],
                        });
                        socket
                            .send(Message::Text(dismiss.to_string().into()))
                            .await
                            .map_err(|e| format!("cannot dismiss a dialog: {e}"))?;
                    }
                    Some("Runtime.exceptionThrown") => {
                        let details = &message["params"]["exceptionDetails"];
                        let text = details["exception"]["description"]
                            .as_str()
                            .or(details["text"].as_str())
                            .unwrap_or("?");
                        console.push(format!("uncaught: {text}"));
                    }
                    Some("Runtime.consoleAPICalled") => {
                        let params = &message["params"];
                        let args: Vec<String> = params["args"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| match &a["value"] {
                                Value::String(s) => s.clone(),
                                Value::Null => a["description"].as_str().unwrap_or("").to_owned(),
                                v => v.to_string(),
                            })
                            .collect();
                        console.push(format!("console.{}: {}", params["type"], args.join(" ")));
                    }
                    _ => {}
                }
            }
        })
    }

    /// Evaluates `js` in the page (promises awaited, the value returned as JSON).
    pub fn try_eval(&mut self, js: &str) -> Result<Value, String> {
        let session = self.session.clone();
        let result = self.send(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
        )?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("an exception");
            return Err(format!("threw {text}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `js`; an exception fails the test.
    pub fn eval(&mut self, js: &str) -> Value {
        match self.try_eval(js) {
            Ok(value) => value,
            Err(e) => panic!("evaluating `{js}`: {e}\n{}", self.diagnostics()),
        }
    }

    /// Waits until `js` evaluates to a truthy value and returns it; fails the test after `timeout`
    /// with `what` and the page's state.
    pub fn wait_until(&mut self, what: &str, js: &str, timeout: Duration) -> Value {
        self.try_wait_until(what, js, timeout)
            .unwrap_or_else(|message| panic!("{message}"))
    }

    /// [`Browser::wait_until`] that returns the failure message instead of failing.
    pub fn try_wait_until(
        &mut self,
        what: &str,
        js: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.try_eval(js) {
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(value) => format!("last value: {value}"),
                Err(e) => format!("last error: {e}"),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what} ({last})\n{}",
                    self.diagnostics()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the first element matching `selector` and returns its text.
    pub fn wait_for(&mut self, selector: &str) -> String {
        let js = format!(
            "(() => {{ const el = document.querySelector({sel}); return el && (el.textContent || ' '); }})()",
            sel = js_string(selector)
        );
        let text = self.wait_until(&format!("an element `{selector}`"), &js, WAIT);
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Opens `url` and waits until the document has loaded.
    pub fn goto(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url}));
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            panic!("cannot open {url}: {error}\n{}", self.diagnostics());
        }
        self.wait_until(
            &format!("{url} to load"),
            "document.readyState === 'complete'",
            WAIT,
        );
    }

    /// Reloads the page and waits until the new document has loaded.
    pub fn reload(&mut self) {
        // A mark on the old document tells it from the new one, whose readyState starts over.
        self.eval("window.__beforeReload = true");
        self.call("Page.reload", json!({"ignoreCache": true}));
        self.wait_until(
            "the page to reload",
            "!window.__beforeReload && document.readyState === 'complete'",
            WAIT,
        );
    }

    /// Clicks the middle of the first visible element matching `selector` with the mouse, as a user
    /// would: it must be on screen and not covered by another element.
    pub fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (!el) return null;
                el.scrollIntoView({{block: 'center', inline: 'center'}});
                const r = el.getBoundingClientRect();
                if (r.width === 0 || r.height === 0) return null;
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const hit = document.elementFromPoint(x, y);
                if (!hit || !(hit === el || el.contains(hit))) {{
                    return {{x, y, covered: hit ? hit.outerHTML.slice(0, 200) : 'nothing'}};
                }}
                return {{x, y}};
            }})()",
            sel = js_string(selector)
        );
        let point = self.wait_until(&format!("a visible `{selector}` to click"), &js, WAIT);
        if let Some(covered) = point.get("covered") {
            panic!(
                "`{selector}` is covered by {covered} where it would be clicked\n{}",
                self.diagnostics()
            );
        }
        let (x, y) = (point["x"].clone(), point["y"].clone());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Empties the field matching `selector`, focuses it and types `text` into it (real input events).
    pub fn type_into(&mut self, selector: &str, text: &str) {
        let js = format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (!el) return false;
                el.focus();
                el.value = '';
                el.dispatchEvent(new Event('input', {{bubbles: true}}));
                return document.activeElement === el;
            }})()",
            sel = js_string(selector)
        );
        self.wait_until(&format!("a focusable `{selector}` to type into"), &js, WAIT);
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Emulates a screen of this size in CSS pixels; `mobile` also applies the page's viewport meta tag.
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Saves what the viewport shows as `<output dir>/<name>.png`, prints and returns the path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        self.capture(name, json!({"format": "png"}))
    }

    /// Saves the whole page, also what is scrolled out of view, like [`Browser::screenshot`].
    pub fn screenshot_full_page(&mut self, name: &str) -> PathBuf {
        let size = self.eval(
            "({width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight})",
        );
        let clip =
            json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        self.capture(
            name,
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
        )
    }

    fn capture(&mut self, name: &str, params: Value) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", params);
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        let path = self.out_dir.join(format!("{name}.png"));
        std::fs::write(&path, &png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        println!("screenshot: {}", path.display());
        path
    }

    /// The JavaScript dialogs the page opened so far (`alert: "1"`, …); the driver dismissed them.
    pub fn dialogs(&self) -> &[String] {
        &self.dialogs
    }

    /// Uncaught exceptions and console output of the page so far.
    pub fn console(&self) -> &[String] {
        &self.console
    }

    /// The text of the page (what a user sees), its console and its dialogs, for failure messages.
    pub fn diagnostics(&mut self) -> String {
        let text = match self.try_eval("document.body ? document.body.innerText : document.title") {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(e) => format!("<cannot read the page: {e}>"),
        };
        let url = self
            .try_eval("location.href")
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        // Without a session bus Chromium complains about D-Bus on every start: noise, not a clue.
        let useful: Vec<&String> = stderr.iter().filter(|l| !l.contains("dbus/")).collect();
        let tail: Vec<&str> = useful[useful.len().saturating_sub(20)..]
            .iter()
            .map(|l| l.as_str())
            .collect();
        format!(
            "--- page {url} ---\n{text}\n--- console ---\n{}\n--- dialogs ---\n{}\n\
             --- chromium stderr (last lines) ---\n{}",
            self.console.join("\n"),
            self.dialogs.join("\n"),
            tail.join("\n"),
        )
    }
}

/// `s` as a JavaScript string literal (JSON strings are valid JavaScript).
pub fn js_string(s: &str) -> String {
    Value::from(s).to_string()
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Standard base64 (what DevTools sends screenshots in), padding optional.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= value(c) << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
