//! Arbitrary bytes as one WebSocket binary message: `decode_frame` must never panic, and when it
//! succeeds `render_frame` must not either, and must print only JSON objects with `v` and `type`
//! (through the emitter, as `watch` and `replay` do). Two renderers: the default one, and one with
//! `--include-raw` and `--gift-streaks`, which serialises whole decoded messages.

#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tiklive::claims::ClaimParser;
use tiklive::events::DecodeOptions;
use tiklive::pipeline::{Emitter, EventFilter, RenderedBatch, Renderer};
use tiklive::protocol::decode_frame;
use tiklive::recording::render_frame;

static RENDERERS: LazyLock<[Renderer; 2]> = LazyLock::new(|| {
    [
        Renderer::default(),
        Renderer::new(
            DecodeOptions {
                include_raw: true,
                claims: ClaimParser::new(),
            },
            EventFilter::new(&[], false, true).expect("no filter types"),
        ),
    ]
});

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if decode_frame(bytes.clone()).is_err() {
        return;
    }
    for renderer in RENDERERS.iter() {
        let mut batch = RenderedBatch::default();
        render_frame(renderer, bytes.clone(), &mut batch);
        assert_eq!(
            batch.stats.bad_frames, 0,
            "decode_frame succeeded, render_frame did not"
        );
        let mut out = Vec::new();
        let mut emitter = Emitter::new(&mut out, 64, false);
        emitter.emit(&batch).expect("writing to a Vec");
        drop(emitter);
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("every line is JSON");
            assert_eq!(v["v"], 1, "line without v: {v}");
            assert!(v["type"].is_string(), "line without type: {v}");
        }
    }
});
