//! tiklive's core, shared by every subcommand: the webcast protocol, typed events, claim parsing, the
//! live client, the replay pipeline and TikTok Login Kit (`oauth`). Nothing here knows about argv; `cli` and `commands` do.

pub mod certs;
pub mod claims;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod events;
pub mod export;
pub mod money;
pub mod oauth;
pub mod orders;
pub mod pipeline;
pub mod protocol;
pub mod recording;
pub mod server;
pub mod store;
pub mod webcast;

/// Standard base64 (RFC 4648, with padding): for payloads in `--include-raw` and proxy credentials.
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), expected);
        }
    }
}
