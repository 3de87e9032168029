//! PKCE and the other random values of a login: the code verifier, its challenge (hex SHA-256, which is
//! what TikTok's desktop Login Kit verifies, not RFC 7636's base64url; see OAUTH.md §2), the `state`
//! and the browser binding. One place, so the encoding TikTok expects is decided once and tested.

use ring::rand::{SecureRandom, SystemRandom};

use super::OAuthError;

/// How a code challenge encodes the SHA-256 of the verifier. `code_challenge_method` is `S256` for
/// both: the method names the hash, not the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChallengeEncoding {
    /// 64 lower-case hex digits: TikTok's desktop Login Kit (the documented form for loopback
    /// redirects, and the one `tiklive login` sends).
    #[default]
    Hex,
    /// RFC 7636 base64url without padding (43 characters), for a provider that follows the RFC.
    Base64Url,
}

/// Characters a verifier may contain (RFC 7636 §4.1 and TikTok's desktop guide).
const UNRESERVED: &[u8; 66] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

/// Length of the verifiers we make (43 to 128 allowed).
pub const VERIFIER_LEN: usize = 64;

/// Fills `out` from the operating system's random source.
fn fill(out: &mut [u8]) -> Result<(), OAuthError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| OAuthError::Config("the system random number generator failed".into()))
}

/// A fresh code verifier: 64 characters drawn uniformly from the unreserved set.
pub fn new_verifier() -> Result<String, OAuthError> {
    let mut out = String::with_capacity(VERIFIER_LEN);
    let mut bytes = [0u8; 128];
    while out.len() < VERIFIER_LEN {
        fill(&mut bytes)?;
        // 198 = 3 × 66: rejecting bytes at or above it keeps every character equally likely.
        for b in bytes.iter().filter(|b| **b < 3 * 66) {
            if out.len() == VERIFIER_LEN {
                break;
            }
            out.push(UNRESERVED[(*b % 66) as usize] as char);
        }
    }
    Ok(out)
}

/// An unguessable token of 32 random bytes (256 bits) as base64url: `state` values and browser
/// bindings.
pub fn random_token() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 32];
    fill(&mut bytes)?;
    Ok(base64url(&bytes))
}

/// The code challenge of `verifier`.
pub fn challenge(verifier: &str, encoding: ChallengeEncoding) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    match encoding {
        ChallengeEncoding::Hex => digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        ChallengeEncoding::Base64Url => base64url(digest.as_ref()),
    }
}

/// base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    crate::base64(bytes)
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifier of RFC 7636 Appendix B, and its challenges (OAUTH.md §2).
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn the_desktop_challenge_is_lower_case_hex_of_sha256() {
        let hex = challenge(VERIFIER, ChallengeEncoding::Hex);
        assert_eq!(
            hex,
            "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3"
        );
        assert_eq!(challenge(VERIFIER, ChallengeEncoding::default()), hex);
    }

    #[test]
    fn the_rfc_challenge_is_base64url_without_padding() {
        assert_eq!(
            challenge(VERIFIER, ChallengeEncoding::Base64Url),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_long_unreserved_and_fresh() {
        let a = new_verifier().unwrap();
        let b = new_verifier().unwrap();
        assert_eq!(a.len(), VERIFIER_LEN);
        assert!((43..=128).contains(&a.len()));
        assert!(a.bytes().all(|c| UNRESERVED.contains(&c)), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn tokens_are_url_safe_and_fresh() {
        let a = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, random_token().unwrap());
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
