//! A bounded, deterministic mutation fuzzer that runs in `cargo test`: the stable-toolchain companion of
//! the cargo-fuzz target in `fuzz/`.
//!
//! Seeds are the real captures (`../shared/captures`, message payloads wrapped in the right envelope)
//! and frames from the benchmark generator. Each iteration mutates one level of the stack — the whole
//! push frame, the fetch result, one message payload (under its method or another), or the gzip stream
//! — with bit flips, byte changes, truncations, insertions, deletions, duplicated chunks, splices,
//! corrupted length fields and wire types, then re-wraps (gzip'ing or not) and runs `decode_frame` and
//! `render_frame`. Beyond "never panics", it checks that a frame counts as bad exactly when
//! `decode_frame` fails and that every line printed is a JSON object with `v` and `type`.
//!
//! A second part feeds random recordings (valid records mixed with garbage, truncations and absurd
//! length prefixes) through `recording::replay` with 1–4 threads, and checks that the output does not
//! depend on the thread count.
//!
//! `TIKLIVE_FUZZ_ITERS` (default 20000) and `TIKLIVE_FUZZ_SEED` change the run; a failing input is
//! written to `target/fuzz-smoke-failures/`. `TIKLIVE_FUZZ_SEEDS_DIR=DIR` also writes the seed frames
//! to DIR (the corpus `benches/run.sh` gives cargo-fuzz).

#[path = "../benches/support/recording.rs"]
mod recording;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use flate2::Compression;
use prost::Message;
use tiklive::claims::ClaimParser;
use tiklive::events::DecodeOptions;
use tiklive::pipeline::{Emitter, EventFilter, RenderedBatch, Renderer};
use tiklive::protocol::{BaseMessage, FetchResult, HeaderEntry, PushFrame, decode_frame};
use tiklive::recording::{MAX_RECORD, render_frame, replay};

use recording::{Generator, Spec, gzip_bytes};

const DEFAULT_ITERS: usize = 20_000;
const DEFAULT_SEED: u64 = 0x5eed_f022_7161_1e01;

/// Every method tiklive models, plus ones it does not: payloads are also decoded under the wrong one.
const METHODS: &[&str] = &[
    "WebcastChatMessage",
    "WebcastGiftMessage",
    "WebcastLikeMessage",
    "WebcastMemberMessage",
    "WebcastSocialMessage",
    "WebcastRoomUserSeqMessage",
    "WebcastSubNotifyMessage",
    "WebcastQuestionNewMessage",
    "WebcastEmoteChatMessage",
    "WebcastEnvelopeMessage",
    "WebcastControlMessage",
    "WebcastLiveIntroMessage",
    "WebcastImDeleteMessage",
    "WebcastRoomPinMessage",
    "WebcastCaptionMessage",
    "WebcastLinkMicBattle",
    "WebcastLinkMicArmies",
    "WebcastRankUpdateMessage",
    "",
];

/// The captures that are message payloads, with the method they decode as (captures/README.md).
const CAPTURED_PAYLOADS: &[(&str, &str)] = &[
    ("member-join-1.pb", "WebcastMemberMessage"),
    ("member-join-2.pb", "WebcastMemberMessage"),
    ("chat-emote-only.pb", "WebcastChatMessage"),
    ("gift-rose-streak-start.pb", "WebcastGiftMessage"),
    ("im-delete.pb", "WebcastImDeleteMessage"),
    ("social-share.pb", "WebcastSocialMessage"),
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/captures")
}

// ---------------------------------------------------------------------------------------------------
// Seeds

struct Corpus {
    /// Whole push frames.
    frames: Vec<Vec<u8>>,
    /// Encoded fetch results.
    results: Vec<Vec<u8>>,
    /// Message payloads and their method.
    payloads: Vec<(String, Vec<u8>)>,
    /// Gzip streams of fetch results.
    gzips: Vec<Vec<u8>>,
}

fn message(method: &str, payload: &[u8], msg_id: u64) -> BaseMessage {
    BaseMessage {
        method: method.to_owned(),
        payload: Bytes::copy_from_slice(payload),
        msg_id,
    }
}

fn result_with(messages: Vec<BaseMessage>) -> Vec<u8> {
    FetchResult {
        messages,
        cursor: "1692120689751_7267603020139989890_1_1_0_0".into(),
        fetch_interval: 1000,
        now: 1_692_120_689_751,
        internal_ext: "-".into(),
        need_ack: true,
        ..Default::default()
    }
    .encode_to_vec()
}

/// How a fetch result is put in a frame.
#[derive(Clone, Copy, Debug)]
enum Wrap {
    Plain,
    Gzip,
    /// gzip bytes without the header (inflated because of the magic).
    GzipNoHeader,
    /// header says gzip, bytes are not.
    HeaderOnly,
}

fn frame_with_payload(payload: Vec<u8>, header: Option<&str>, payload_type: &str) -> Vec<u8> {
    PushFrame {
        seq_id: 9,
        log_id: 5_092_463_814_493_970_448,
        service: 8888,
        method: 8,
        headers: header
            .map(|v| {
                vec![HeaderEntry {
                    key: "compress_type".into(),
                    value: v.into(),
                }]
            })
            .unwrap_or_default(),
        payload_encoding: "pb".into(),
        payload_type: payload_type.into(),
        payload: payload.into(),
    }
    .encode_to_vec()
}

fn wrap(result: &[u8], how: Wrap) -> Vec<u8> {
    match how {
        Wrap::Plain => frame_with_payload(result.to_vec(), Some("none"), "msg"),
        Wrap::Gzip => {
            frame_with_payload(gzip_bytes(result, Compression::fast()), Some("gzip"), "msg")
        }
        Wrap::GzipNoHeader => {
            frame_with_payload(gzip_bytes(result, Compression::fast()), None, "msg")
        }
        Wrap::HeaderOnly => frame_with_payload(result.to_vec(), Some("gzip"), "msg"),
    }
}

fn build_corpus(seed: u64) -> Corpus {
    let dir = captures_dir();
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("cannot read capture {}: {e}", dir.join(name).display()))
    };
    let mut c = Corpus {
        frames: vec![read("pushframe-like.bin")],
        results: Vec::new(),
        payloads: Vec::new(),
        gzips: Vec::new(),
    };
    for (i, (file, method)) in CAPTURED_PAYLOADS.iter().enumerate() {
        let payload = read(file);
        let result = result_with(vec![message(method, &payload, 1000 + i as u64)]);
        c.frames.push(wrap(&result, Wrap::Plain));
        c.frames.push(wrap(&result, Wrap::Gzip));
        c.gzips.push(gzip_bytes(&result, Compression::fast()));
        c.results.push(result);
        c.payloads.push((method.to_string(), payload));
    }
    // Everything in one batch, as a busy live would send it.
    let all: Vec<BaseMessage> = c
        .payloads
        .iter()
        .enumerate()
        .map(|(i, (m, p))| message(m, p, 2000 + i as u64))
        .collect();
    let all = result_with(all);
    c.frames.push(wrap(&all, Wrap::Gzip));
    c.results.push(all);

    // Generated frames and messages, small batches to keep the run short.
    let mut generator = Generator::new(&Spec {
        seed,
        frames: 8,
        mean_messages: 3,
        gzip_percent: 50,
    });
    for i in 0..10 {
        c.frames.push(generator.frame_with(1 + i % 3, i % 2 == 0));
    }
    for _ in 0..40 {
        let m = generator.message();
        c.payloads.push((m.method.clone(), m.payload.to_vec()));
    }
    for chunk in c.payloads[CAPTURED_PAYLOADS.len()..].chunks(3) {
        let msgs = chunk
            .iter()
            .enumerate()
            .map(|(i, (m, p))| message(m, p, 3000 + i as u64))
            .collect();
        let result = result_with(msgs);
        c.gzips.push(gzip_bytes(&result, Compression::fast()));
        c.results.push(result);
    }
    // Control frames and edge cases.
    for payload_type in ["hb", "ack", "im_enter_room_resp", "", "msg"] {
        c.frames
            .push(frame_with_payload(Vec::new(), None, payload_type));
    }
    c.frames.push(Vec::new());
    c
}

/// Pieces of claims and chat, and characters that change under NFKD, lowercasing or both.
const COMMENT_TOKENS: &[&str] = &[
    "jp",
    "JP",
    "Jp",
    "j'prends",
    "je prends",
    "j’prends",
    "j prends",
    "jprend",
    "prends",
    "pas",
    "plus",
    "le",
    "la",
    "l'",
    "en",
    "n°",
    "#",
    "réf",
    "ref",
    "item",
    "x",
    "×",
    "✖️",
    "x2",
    "2x",
    "qty",
    "qté",
    "pcs",
    "pièces",
    "fois",
    "taille",
    "t",
    "t38",
    "size",
    "unique",
    "XL",
    "2XL",
    "m",
    "rouge",
    "bleu",
    "marine",
    "Doré",
    "fleuri",
    "svp",
    "merci",
    "a12x3",
    "4x2",
    "12",
    "012",
    "1234567",
    "999",
    "1000",
    "0",
    "A",
    "abc123",
    "ǰ",
    "Ｊ",
    "ＪＰ",
    "𝐉𝐏",
    "ʲ",
    "ĳ",
    "İ",
    "ß",
    "ﬀ",
    "ǅ",
    "Ⅻ",
    "½",
    "²",
    "١٢",
    "１２",
    "①",
    "\u{301}",
    "\u{200d}",
    "\u{a0}",
    "\u{feff}",
    "\u{fe0f}",
    "🔥",
    "👉",
    "❤️",
    "🧚‍♀️",
    "'",
    "’",
    "`",
    "´",
    ",",
    ":",
    "-",
    "!",
    "?",
    ".",
];

fn random_comment(rng: &mut fastrand::Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.usize(..10) {
        s.push_str(COMMENT_TOKENS[rng.usize(..COMMENT_TOKENS.len())]);
        match rng.u32(..6) {
            0 => {}
            1 => s.push(char::from_u32(rng.u32(..0x3_0000)).unwrap_or('?')),
            _ => s.push(' '),
        }
    }
    s
}

fn export_seeds(dir: &str, corpus: &Corpus) {
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create seeds dir");
    for (i, f) in corpus.frames.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-frame-{i:03}.bin")), f).expect("write seed");
    }
    for (i, r) in corpus.results.iter().enumerate() {
        std::fs::write(
            dir.join(format!("seed-wrapped-{i:03}.bin")),
            wrap(r, Wrap::Plain),
        )
        .expect("write seed");
    }
}

// ---------------------------------------------------------------------------------------------------
// Mutations

/// A length-delimited field found by walking protobuf bytes: where its key, length and body are.
#[derive(Clone, Copy, Debug)]
struct LenField {
    key: usize,
    len_start: usize,
    len_end: usize,
    end: usize,
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Collects the length-delimited fields of `buf[start..end]` and, recursively, of bodies that parse as
/// messages themselves. Returns false when the range is not a well-formed message.
fn scan(buf: &[u8], start: usize, end: usize, depth: u32, out: &mut Vec<LenField>) -> bool {
    let mut pos = start;
    let mut found = Vec::new();
    while pos < end {
        let key = pos;
        let Some(k) = read_varint(&buf[..end], &mut pos) else {
            return false;
        };
        match k & 7 {
            0 => {
                if read_varint(&buf[..end], &mut pos).is_none() {
                    return false;
                }
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len_start = pos;
                let Some(len) = read_varint(&buf[..end], &mut pos) else {
                    return false;
                };
                let len_end = pos;
                let Some(body_end) = pos.checked_add(len as usize).filter(|&e| e <= end) else {
                    return false;
                };
                found.push(LenField {
                    key,
                    len_start,
                    len_end,
                    end: body_end,
                });
                if depth < 8 && len > 0 {
                    let mut nested = Vec::new();
                    if scan(buf, len_end, body_end, depth + 1, &mut nested) {
                        found.extend(nested);
                    }
                }
                pos = body_end;
            }
            _ => return false,
        }
        if pos > end || k >> 3 == 0 {
            return false;
        }
    }
    out.extend(found);
    true
}

fn encode_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

struct Mutator {
    rng: fastrand::Rng,
}

impl Mutator {
    fn pos(&mut self, len: usize) -> usize {
        self.rng.usize(..=len)
    }

    /// Applies 1–4 random mutations; `other` is a donor for splices. Returns what was done.
    fn mutate(&mut self, data: &mut Vec<u8>, other: &[u8]) -> String {
        let n = 1 + self.rng.usize(..4).min(self.rng.usize(..4));
        let mut done = Vec::new();
        for _ in 0..n {
            done.push(self.mutate_once(data, other));
        }
        done.join("+")
    }

    fn mutate_once(&mut self, data: &mut Vec<u8>, other: &[u8]) -> &'static str {
        let len = data.len();
        match self.rng.u32(..13) {
            0 | 1 if len > 0 => {
                for _ in 0..1 + self.rng.usize(..4) {
                    let i = self.rng.usize(..len);
                    data[i] ^= 1 << self.rng.u32(..8);
                }
                "bitflip"
            }
            2 if len > 0 => {
                let i = self.rng.usize(..len);
                let random = self.rng.u8(..);
                let values = [
                    0x00u8, 0x01, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1f, 0x8b, random,
                ];
                data[i] = values[self.rng.usize(..values.len())];
                "byte"
            }
            3 if len > 0 => {
                data.truncate(self.rng.usize(..len));
                "truncate"
            }
            4 => {
                let at = self.pos(len);
                let n = 1 + self.rng.usize(..16);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
                data.splice(at..at, bytes);
                "insert"
            }
            5 if len > 0 => {
                let a = self.rng.usize(..len);
                let b = (a + 1 + self.rng.usize(..64)).min(len);
                data.drain(a..b);
                "delete"
            }
            6 if len > 0 => {
                let a = self.rng.usize(..len);
                let b = (a + 1 + self.rng.usize(..256)).min(len);
                let chunk = data[a..b].to_vec();
                let at = self.pos(len);
                data.splice(at..at, chunk);
                "duplicate"
            }
            7 if !other.is_empty() => {
                let cut = self.pos(len);
                let from = self.rng.usize(..other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
                "splice"
            }
            8..=10 => self.corrupt_length(data),
            11 => self.corrupt_key(data),
            _ if len > 0 => {
                // A varint that never ends, or one of ten bytes.
                let at = self.rng.usize(..len);
                let run: &[u8] = if self.rng.bool() {
                    &[0xff; 11]
                } else {
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
                };
                data.splice(at..at, run.iter().copied());
                "varint"
            }
            _ => {
                data.push(self.rng.u8(..));
                "append"
            }
        }
    }

    /// Rewrites the length of one length-delimited field (anywhere in the nesting).
    fn corrupt_length(&mut self, data: &mut Vec<u8>) -> &'static str {
        let mut fields = Vec::new();
        scan(data, 0, data.len(), 0, &mut fields);
        let Some(f) = self.rng.choice(fields.iter().copied()) else {
            data.push(0x12);
            return "length(none)";
        };
        let len = (f.end - f.len_end) as u64;
        let new = match self.rng.u32(..8) {
            0 => len + 1,
            1 => len.saturating_sub(1),
            2 => 0,
            3 => len + 1 + self.rng.u64(..200),
            4 => u64::from(u32::MAX),
            5 => u64::MAX,
            6 => (data.len() - f.len_end) as u64 + 1,
            _ => self.rng.u64(..len.max(1) * 2),
        };
        data.splice(f.len_start..f.len_end, encode_varint(new));
        "length"
    }

    /// Changes the wire type or number of one field's key.
    fn corrupt_key(&mut self, data: &mut [u8]) -> &'static str {
        let mut fields = Vec::new();
        scan(data, 0, data.len(), 0, &mut fields);
        let Some(f) = self.rng.choice(fields.iter().copied()) else {
            return "key(none)";
        };
        if self.rng.bool() {
            data[f.key] = (data[f.key] & !7) | self.rng.u8(..8);
        } else {
            data[f.key] = data[f.key].wrapping_add(8 * (1 + self.rng.u8(..3)));
        }
        "key"
    }
}

// ---------------------------------------------------------------------------------------------------
// The property under test

fn renderers() -> Vec<Renderer> {
    vec![
        Renderer::default(),
        Renderer::new(
            DecodeOptions {
                include_raw: true,
                claims: ClaimParser::new(),
            },
            EventFilter::new(&[], false, true).unwrap(),
        ),
        Renderer::new(
            DecodeOptions {
                include_raw: false,
                claims: ClaimParser::with_keyword_pattern(r"jp|take|prends?").unwrap(),
            },
            EventFilter::new(&["chat,gift".into()], true, false).unwrap(),
        ),
    ]
}

/// Every line is a JSON object with `"v": 1` and a string `"type"`.
fn check_ndjson(out: &[u8]) -> Result<usize, String> {
    let mut lines = 0;
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        let v: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| format!("line is not JSON ({e}): {}", String::from_utf8_lossy(line)))?;
        if v.get("v") != Some(&serde_json::json!(1))
            || !v.get("type").is_some_and(|t| t.is_string())
        {
            return Err(format!(
                "line lacks v/type: {}",
                String::from_utf8_lossy(line)
            ));
        }
    }
    if !out.is_empty() && out.last() != Some(&b'\n') {
        return Err("output does not end with a newline".into());
    }
    Ok(lines)
}

/// Decodes and renders one frame; `Err` describes a violated property (a panic propagates).
fn check_frame(renderer: &Renderer, frame: &[u8]) -> Result<usize, String> {
    let bytes = Bytes::copy_from_slice(frame);
    let decoded_ok = decode_frame(bytes.clone()).is_ok();
    let mut batch = RenderedBatch::default();
    render_frame(renderer, bytes, &mut batch);
    if batch.stats.frames != 1 || (batch.stats.bad_frames == 0) != decoded_ok {
        return Err(format!(
            "stats disagree with decode_frame (ok: {decoded_ok}): {:?}",
            batch.stats
        ));
    }
    let mut out = Vec::new();
    let mut emitter = Emitter::new(&mut out, 64, false);
    emitter
        .emit(&mut batch)
        .map_err(|e| format!("emit to a Vec failed: {e}"))?;
    drop(emitter);
    check_ndjson(&out)
}

struct Failures {
    dir: PathBuf,
    list: Vec<String>,
}

impl Failures {
    fn record(&mut self, name: &str, what: String, input: &[u8]) {
        if self.list.len() < 20 {
            let _ = std::fs::create_dir_all(&self.dir);
            let path = self.dir.join(format!("{name}.bin"));
            let _ = std::fs::write(&path, input);
            self.list
                .push(format!("{name}: {what} (input: {})", path.display()));
        } else if self.list.len() == 20 {
            self.list.push("… more failures not recorded".into());
        }
    }
}

fn run_case(
    failures: &mut Failures,
    name: &str,
    input: &[u8],
    f: impl FnOnce() -> Result<usize, String>,
) -> usize {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(lines)) => lines,
        Ok(Err(what)) => {
            failures.record(name, what, input);
            0
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.record(name, format!("PANIC: {msg}"), input);
            0
        }
    }
}

fn failures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-smoke-failures")
}

// ---------------------------------------------------------------------------------------------------
// Tests

#[test]
fn mutated_frames_never_panic_and_render_valid_ndjson() {
    let iters: usize = env_or("TIKLIVE_FUZZ_ITERS", DEFAULT_ITERS);
    let seed: u64 = env_or("TIKLIVE_FUZZ_SEED", DEFAULT_SEED);
    let started = Instant::now();
    let corpus = build_corpus(seed);
    if let Ok(dir) = std::env::var("TIKLIVE_FUZZ_SEEDS_DIR") {
        export_seeds(&dir, &corpus);
    }
    let renderers = renderers();
    let parser = ClaimParser::new();
    let mut m = Mutator {
        rng: fastrand::Rng::with_seed(seed),
    };
    let mut failures = Failures {
        dir: failures_dir(),
        list: Vec::new(),
    };
    let (mut lines, mut decoded, mut by_level) = (0usize, 0usize, [0usize; 6]);

    // The seeds themselves must decode.
    for (i, frame) in corpus.frames.iter().enumerate() {
        let r = &renderers[0];
        run_case(&mut failures, &format!("seed-{i}"), frame, || {
            check_frame(r, frame)
        });
    }

    for iter in 0..iters {
        let level = match m.rng.u32(..100) {
            0..=26 => 0,
            27..=49 => 1,
            50..=76 => 2,
            77..=87 => 3,
            88..=89 => 4,
            _ => 5,
        };
        by_level[level] += 1;
        let (frame, what) = match level {
            // The push frame itself.
            0 => {
                let mut f = corpus.frames[m.rng.usize(..corpus.frames.len())].clone();
                let donor = &corpus.frames[m.rng.usize(..corpus.frames.len())];
                let what = m.mutate(&mut f, donor);
                (f, format!("frame {what}"))
            }
            // The fetch result, re-wrapped.
            1 => {
                let mut r = corpus.results[m.rng.usize(..corpus.results.len())].clone();
                let donor = &corpus.results[m.rng.usize(..corpus.results.len())];
                let what = m.mutate(&mut r, donor);
                let how = *m
                    .rng
                    .choice(&[
                        Wrap::Plain,
                        Wrap::Gzip,
                        Wrap::Gzip,
                        Wrap::GzipNoHeader,
                        Wrap::HeaderOnly,
                    ])
                    .unwrap();
                (wrap(&r, how), format!("result {what} {how:?}"))
            }
            // One message payload, under its method or another, among valid messages.
            2 => {
                let (method, payload) = &corpus.payloads[m.rng.usize(..corpus.payloads.len())];
                let mut p = payload.clone();
                let donor = &corpus.payloads[m.rng.usize(..corpus.payloads.len())].1;
                let what = m.mutate(&mut p, donor);
                let method = if m.rng.u32(..4) == 0 {
                    METHODS[m.rng.usize(..METHODS.len())]
                } else {
                    method.as_str()
                };
                let mut msgs = vec![message(method, &p, 1 + m.rng.u64(..3))];
                if m.rng.bool() {
                    let (vm, vp) = &corpus.payloads[m.rng.usize(..corpus.payloads.len())];
                    msgs.insert(m.rng.usize(..=1), message(vm, vp, 1 + m.rng.u64(..3)));
                }
                let how = if m.rng.u32(..3) == 0 {
                    Wrap::Gzip
                } else {
                    Wrap::Plain
                };
                (
                    wrap(&result_with(msgs), how),
                    format!("payload {method} {what} {how:?}"),
                )
            }
            // The gzip stream (header, deflate blocks, CRC, length trailer).
            3 => {
                let mut gz = corpus.gzips[m.rng.usize(..corpus.gzips.len())].clone();
                let what = if m.rng.u32(..3) == 0 && gz.len() >= 8 {
                    // Corrupt the CRC or the ISIZE trailer the inflater sizes its buffer from.
                    let at = gz.len() - 8 + m.rng.usize(..8);
                    gz[at] = m.rng.u8(..);
                    "trailer".to_string()
                } else {
                    let donor = &corpus.gzips[m.rng.usize(..corpus.gzips.len())];
                    m.mutate(&mut gz, donor)
                };
                let header = *m.rng.choice(&[Some("gzip"), None, Some("none")]).unwrap();
                (
                    frame_with_payload(gz, header, "msg"),
                    format!("gzip {what} header {header:?}"),
                )
            }
            // Random bytes, and random bytes behind a valid frame prefix.
            4 => {
                let n = m.rng.usize(..512);
                let mut f: Vec<u8> = (0..n).map(|_| m.rng.u8(..)).collect();
                if m.rng.bool() {
                    let prefix = &corpus.frames[m.rng.usize(..corpus.frames.len())];
                    let cut = m.rng.usize(..=prefix.len());
                    f.splice(0..0, prefix[..cut].iter().copied());
                }
                (f, "random".to_string())
            }
            // A chat comment made of claim-like tokens and tricky Unicode, through the claim parser.
            _ => {
                let comment = random_comment(&mut m.rng);
                let claim = catch_unwind(AssertUnwindSafe(|| parser.parse(&comment)));
                match claim {
                    Err(_) => failures.record(
                        &format!("iter-{iter}-claim"),
                        format!("PANIC in ClaimParser::parse({comment:?})"),
                        comment.as_bytes(),
                    ),
                    Ok(Some(c)) => {
                        let item_ok = c.item.as_deref().is_none_or(|i| {
                            !i.is_empty()
                                && i.chars()
                                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit())
                        });
                        if c.raw != comment || !(1..=999).contains(&c.quantity) || !item_ok {
                            failures.record(
                                &format!("iter-{iter}-claim"),
                                format!("claim breaks its documented invariants: {c:?}"),
                                comment.as_bytes(),
                            );
                        }
                    }
                    Ok(None) => {}
                }
                let chat = tiklive::protocol::ChatMessage {
                    common: Some(tiklive::protocol::Common {
                        method: "WebcastChatMessage".into(),
                        msg_id: 77,
                        room_id: 1,
                        create_time: 1_692_726_385_028,
                        ..Default::default()
                    }),
                    content: comment.clone(),
                    ..Default::default()
                };
                let msgs = vec![message("WebcastChatMessage", &chat.encode_to_vec(), 77)];
                (
                    wrap(&result_with(msgs), Wrap::Plain),
                    format!("comment {comment:?}"),
                )
            }
        };
        let renderer = &renderers[iter % renderers.len()];
        let name = format!("iter-{iter}");
        let before = failures.list.len();
        let n = run_case(&mut failures, &name, &frame, || {
            check_frame(renderer, &frame)
        });
        if failures.list.len() > before {
            let last = failures.list.pop().unwrap();
            failures.list.push(format!("{last} [{what}]"));
        }
        lines += n;
        decoded += usize::from(decode_frame(Bytes::copy_from_slice(&frame)).is_ok());
    }

    eprintln!(
        "fuzz_smoke: {iters} mutated frames (frame/result/payload/gzip/random/comment = {by_level:?}), {decoded} decoded, {lines} lines checked, {} seeds, {:.2} s",
        corpus.frames.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.list.is_empty(),
        "fuzz_smoke failures:\n{}",
        failures.list.join("\n")
    );
    // The mutations must not be so destructive that nothing decodes, nor so mild that everything does.
    assert!(
        iters < 1000 || (decoded > iters / 10 && decoded < iters),
        "decoded {decoded} of {iters}"
    );
}

#[test]
fn gzip_bombs_and_lying_trailers_are_errors() {
    // 33 MiB of zeros inflate past the 32 MiB limit.
    let bomb = gzip_bytes(&vec![0u8; 33 << 20], Compression::best());
    let frame = frame_with_payload(bomb, Some("gzip"), "msg");
    assert!(decode_frame(frame.into()).is_err());
    // A trailer claiming 4 GiB for a small stream.
    let mut gz = gzip_bytes(&result_with(Vec::new()), Compression::fast());
    let n = gz.len();
    gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let frame = frame_with_payload(gz, Some("gzip"), "msg");
    assert!(decode_frame(frame.into()).is_err());
}

/// Builds a recording from valid frames, mutated frames and garbage; returns it and whether it is
/// well-formed as a recording (every length prefix matches).
fn random_recording(m: &mut Mutator, corpus: &Corpus) -> (Vec<u8>, bool) {
    let mut rec = Vec::new();
    let mut well_formed = true;
    for _ in 0..m.rng.usize(..24) {
        match m.rng.u32(..20) {
            0 => {
                // A record longer than what follows (truncated recording).
                rec.extend_from_slice(&(m.rng.u32(1..100_000)).to_be_bytes());
                rec.extend((0..m.rng.usize(..64)).map(|_| m.rng.u8(..)));
                return (rec, false);
            }
            1 => {
                // An absurd length prefix.
                let len = MAX_RECORD as u32 + 1 + m.rng.u32(..1000);
                rec.extend_from_slice(&len.to_be_bytes());
                return (rec, false);
            }
            2 => {
                // A few stray bytes at the end.
                rec.extend((0..1 + m.rng.usize(..3)).map(|_| m.rng.u8(..)));
                return (rec, false);
            }
            3 => rec.extend_from_slice(&0u32.to_be_bytes()),
            4..=6 => {
                let body: Vec<u8> = (0..m.rng.usize(..300)).map(|_| m.rng.u8(..)).collect();
                rec.extend_from_slice(&(body.len() as u32).to_be_bytes());
                rec.extend_from_slice(&body);
            }
            7..=10 => {
                let mut f = corpus.frames[m.rng.usize(..corpus.frames.len())].clone();
                m.mutate(&mut f, &[]);
                rec.extend_from_slice(&(f.len() as u32).to_be_bytes());
                rec.extend_from_slice(&f);
            }
            _ => {
                let f = &corpus.frames[m.rng.usize(..corpus.frames.len())];
                rec.extend_from_slice(&(f.len() as u32).to_be_bytes());
                rec.extend_from_slice(f);
            }
        }
    }
    if m.rng.u32(..10) == 0 && !rec.is_empty() {
        // Raw bit flips anywhere, length prefixes included.
        m.mutate_once(&mut rec, &[]);
        well_formed = false;
    }
    (rec, well_formed)
}

#[test]
fn random_recordings_replay_without_panics_and_independently_of_threads() {
    let seed: u64 = env_or("TIKLIVE_FUZZ_SEED", DEFAULT_SEED) ^ 0x7265_706c_6179;
    let recordings: usize = env_or("TIKLIVE_FUZZ_ITERS", DEFAULT_ITERS) / 100;
    let started = Instant::now();
    let corpus = build_corpus(seed);
    let renderers = renderers();
    let mut m = Mutator {
        rng: fastrand::Rng::with_seed(seed),
    };
    let mut failures = Failures {
        dir: failures_dir(),
        list: Vec::new(),
    };
    let (mut frames, mut errors) = (0u64, 0usize);
    for i in 0..recordings {
        let (rec, well_formed) = random_recording(&mut m, &corpus);
        let renderer = &renderers[i % renderers.len()];
        let threads = 2 + m.rng.usize(..3);
        let name = format!("recording-{i}");
        let result = catch_unwind(AssertUnwindSafe(|| {
            let run = |threads: usize| {
                let mut out = Vec::new();
                let mut emitter = Emitter::new(&mut out, 1000, false);
                let (stats, result) = replay(&rec[..], renderer, &mut emitter, threads);
                drop(emitter);
                (out, stats, result.is_ok())
            };
            let (out1, stats1, ok1) = run(1);
            let (outn, statsn, okn) = run(threads);
            if out1 != outn || stats1 != statsn || ok1 != okn {
                return Err(format!(
                    "1 thread and {threads} threads disagree: {stats1:?} ok={ok1} vs {statsn:?} ok={okn}"
                ));
            }
            if well_formed && !ok1 {
                return Err("a well-formed recording failed to replay".into());
            }
            check_ndjson(&out1)?;
            Ok((stats1.frames, ok1))
        }));
        match result {
            Ok(Ok((n, ok))) => {
                frames += n;
                errors += usize::from(!ok);
            }
            Ok(Err(what)) => failures.record(&name, what, &rec),
            Err(_) => failures.record(&name, "PANIC".into(), &rec),
        }
    }
    eprintln!(
        "fuzz_smoke: {recordings} random recordings, {frames} frames replayed, {errors} stopped with an error, {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.list.is_empty(),
        "replay failures:\n{}",
        failures.list.join("\n")
    );
}

#[test]
fn generated_recording_replays_like_sequential_rendering() {
    // Frames → recording → replay with several threads must print what rendering and emitting the
    // same frames one by one prints, and the generator's expected line count.
    let spec = Spec {
        seed: 42,
        frames: 60,
        mean_messages: 4,
        gzip_percent: 90,
    };
    let mut generator = Generator::new(&spec);
    let frames: Vec<Vec<u8>> = (0..spec.frames).map(|_| generator.next_frame()).collect();
    let mut rec = Vec::new();
    for f in &frames {
        rec.extend_from_slice(&(f.len() as u32).to_be_bytes());
        rec.extend_from_slice(f);
    }
    let renderer = Renderer::default();
    let mut sequential = Vec::new();
    {
        let mut emitter = Emitter::new(&mut sequential, 100_000, false);
        for f in &frames {
            let mut batch = RenderedBatch::default();
            render_frame(&renderer, Bytes::copy_from_slice(f), &mut batch);
            emitter.emit(&mut batch).unwrap();
        }
    }
    for threads in [1, 2, 3] {
        let mut out = Vec::new();
        let mut emitter = Emitter::new(&mut out, 100_000, false);
        let (stats, result) = replay(&rec[..], &renderer, &mut emitter, threads);
        drop(emitter);
        result.unwrap();
        assert_eq!(out, sequential, "{threads} threads");
        assert_eq!(stats.printed, generator.stats.expected_lines);
        assert_eq!(stats.duplicates, generator.stats.duplicates);
        assert_eq!(stats.bad_frames + stats.bad_messages, 0);
    }
    assert_eq!(
        check_ndjson(&sequential).unwrap() as u64,
        generator.stats.expected_lines
    );
}
