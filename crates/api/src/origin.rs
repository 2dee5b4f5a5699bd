//! Origin verification of IMKIT's callbacks (`/imkit/push/v2`, `/imkit/push`).
//!
//! IMKIT defines no header of its own, so each app chooses, in its
//! `generic_push` settings: a shared secret, presented in the URL
//! (`?secret=`) or in `X-Pushgate-Secret`, or proven with an HMAC-SHA256
//! signature `X-Pushgate-Signature: t=<unix s>,v1=<hex of HMAC(secret, "t.body")>`
//! (a proxy in front of pushgate can sign, so the secret never travels); and
//! an IP allowlist. Every configured check must pass; an app with none
//! configured accepts no callback.

use hmac::{Hmac, Mac as _};
use ipnet::IpNet;
use sha2::Sha256;
use std::net::IpAddr;
use subtle::ConstantTimeEq as _;

/// How an app's callbacks prove where they come from.
#[derive(Clone, Default)]
pub struct OriginCheck {
    secret: Option<Vec<u8>>,
    allow_ips: Vec<IpNet>,
    tolerance_seconds: i64,
}

impl std::fmt::Debug for OriginCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCheck")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("allow_ips", &self.allow_ips)
            .field("tolerance_seconds", &self.tolerance_seconds)
            .finish()
    }
}

/// What a callback presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The connection's peer address, if known.
    pub peer: Option<IpAddr>,
    /// `?secret=`.
    pub query_secret: Option<&'a str>,
    /// `X-Pushgate-Secret`.
    pub header_secret: Option<&'a str>,
    /// `X-Pushgate-Signature`.
    pub signature: Option<&'a str>,
    /// The raw body, as signed.
    pub body: &'a [u8],
    /// Now, Unix seconds.
    pub now_seconds: i64,
}

/// Why a callback was refused. The text is safe to show: it never echoes
/// what was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// The app has neither a secret nor an allowlist.
    #[error("origin verification is not configured for this app")]
    NotConfigured,
    /// The peer is not in the allowlist.
    #[error("the caller's address is not allowed")]
    AddressNotAllowed,
    /// Neither the secret nor a signature was presented.
    #[error("no secret or signature was presented")]
    Missing,
    /// The secret presented is not the app's.
    #[error("the secret is wrong")]
    WrongSecret,
    /// The signature header is not `t=<unix s>,v1=<hex>`.
    #[error("the signature header is malformed")]
    MalformedSignature,
    /// The signature's timestamp is outside the tolerance window.
    #[error("the signature's timestamp is outside the tolerance window")]
    StaleSignature,
    /// No `v1` signature matches.
    #[error("the signature does not match")]
    WrongSignature,
}

impl OriginCheck {
    /// A check with a shared secret and/or an allowlist; a signature's
    /// timestamp may be `tolerance_seconds` off either way.
    pub fn new(secret: Option<Vec<u8>>, allow_ips: Vec<IpNet>, tolerance_seconds: u64) -> Self {
        Self { secret, allow_ips, tolerance_seconds: i64::try_from(tolerance_seconds).unwrap_or(i64::MAX) }
    }

    /// Passes when every configured check passes.
    pub fn verify(&self, presented: &Presented<'_>) -> Result<(), OriginError> {
        if self.secret.is_none() && self.allow_ips.is_empty() {
            return Err(OriginError::NotConfigured);
        }
        if !self.allow_ips.is_empty() {
            let allowed = presented.peer.is_some_and(|peer| {
                // An IPv4 peer reached over an IPv6 socket shows as ::ffff:a.b.c.d.
                let peer = match peer {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
                    IpAddr::V4(_) => peer,
                };
                self.allow_ips.iter().any(|net| net.contains(&peer))
            });
            if !allowed {
                return Err(OriginError::AddressNotAllowed);
            }
        }
        let Some(secret) = &self.secret else { return Ok(()) };
        if let Some(signature) = presented.signature {
            return self.verify_signature(secret, signature, presented.body, presented.now_seconds);
        }
        let given = presented.header_secret.or(presented.query_secret).ok_or(OriginError::Missing)?;
        // Compare digests, so the comparison takes the same time whatever the lengths.
        let digest = |bytes: &[u8]| -> [u8; 32] { <Sha256 as sha2::Digest>::digest(bytes).into() };
        if bool::from(digest(given.as_bytes()).ct_eq(&digest(secret))) { Ok(()) } else { Err(OriginError::WrongSecret) }
    }

    fn verify_signature(&self, secret: &[u8], header: &str, body: &[u8], now_seconds: i64) -> Result<(), OriginError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
                Some(("v1", value)) => {
                    signatures.push(hex::decode(value).map_err(|_| OriginError::MalformedSignature)?)
                }
                // Other schemes may be added beside v1 later; they are ignored.
                Some(_) => {}
                None => return Err(OriginError::MalformedSignature),
            }
        }
        let timestamp = timestamp.ok_or(OriginError::MalformedSignature)?;
        if signatures.is_empty() {
            return Err(OriginError::MalformedSignature);
        }
        if now_seconds.abs_diff(timestamp) > self.tolerance_seconds.unsigned_abs() {
            return Err(OriginError::StaleSignature);
        }
        let expected = sign(secret, timestamp, body);
        // Every candidate is compared, in constant time.
        let matched =
            signatures.iter().fold(false, |matched, candidate| matched | bool::from(candidate.ct_eq(&expected)));
        if matched { Ok(()) } else { Err(OriginError::WrongSignature) }
    }
}

/// HMAC-SHA256 of `"<timestamp>.<body>"` with the secret: what `v1` carries, in hex.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-long-shared-secret-0123456789";

    fn presented<'a>(body: &'a [u8]) -> Presented<'a> {
        Presented { peer: Some("10.1.2.3".parse().expect("ip")), body, now_seconds: 1_000_000, ..Presented::default() }
    }

    fn signature(timestamp: i64, body: &[u8]) -> String {
        format!("t={timestamp},v1={}", hex::encode(sign(SECRET, timestamp, body)))
    }

    #[test]
    fn the_secret_in_the_header_or_the_query_passes_and_a_wrong_one_does_not() {
        let check = OriginCheck::new(Some(SECRET.to_vec()), Vec::new(), 300);
        let secret = std::str::from_utf8(SECRET).expect("utf-8");
        assert_eq!(check.verify(&Presented { header_secret: Some(secret), ..presented(b"{}") }), Ok(()));
        assert_eq!(check.verify(&Presented { query_secret: Some(secret), ..presented(b"{}") }), Ok(()));
        assert_eq!(
            check.verify(&Presented { query_secret: Some("a-long-shared-secret-012345678"), ..presented(b"{}") }),
            Err(OriginError::WrongSecret)
        );
        assert_eq!(check.verify(&presented(b"{}")), Err(OriginError::Missing));
    }

    #[test]
    fn a_signature_must_match_the_body_and_be_recent() {
        let check = OriginCheck::new(Some(SECRET.to_vec()), Vec::new(), 300);
        let body = br#"{"_id":"m1"}"#;
        let good = signature(1_000_100, body);
        assert_eq!(check.verify(&Presented { signature: Some(&good), ..presented(body) }), Ok(()));
        let other_body = presented(br#"{"_id":"m2"}"#);
        assert_eq!(check.verify(&Presented { signature: Some(&good), ..other_body }), Err(OriginError::WrongSignature));
        let stale = signature(1_000_000 - 301, body);
        assert_eq!(
            check.verify(&Presented { signature: Some(&stale), ..presented(body) }),
            Err(OriginError::StaleSignature)
        );
        let rotated = format!("{},v1={}", signature(1_000_000, body), "00".repeat(32));
        assert_eq!(
            check.verify(&Presented { signature: Some(&rotated), ..presented(body) }),
            Ok(()),
            "any v1 may match"
        );
        for malformed in ["v1=00", "t=1000000", "t=1000000,v1=zz", "garbage"] {
            assert_eq!(
                check.verify(&Presented { signature: Some(malformed), ..presented(body) }),
                Err(OriginError::MalformedSignature),
                "{malformed}"
            );
        }
    }

    #[test]
    fn the_allowlist_applies_on_top_of_the_secret() {
        let nets = vec!["10.0.0.0/8".parse().expect("net")];
        let only_ips = OriginCheck::new(None, nets.clone(), 300);
        assert_eq!(only_ips.verify(&presented(b"{}")), Ok(()));
        let outside = Presented { peer: Some("192.168.1.1".parse().expect("ip")), ..presented(b"{}") };
        assert_eq!(only_ips.verify(&outside), Err(OriginError::AddressNotAllowed));
        let mapped = Presented { peer: Some("::ffff:10.9.9.9".parse().expect("ip")), ..presented(b"{}") };
        assert_eq!(only_ips.verify(&mapped), Ok(()));
        assert_eq!(only_ips.verify(&Presented { peer: None, ..presented(b"{}") }), Err(OriginError::AddressNotAllowed));
        let both = OriginCheck::new(Some(SECRET.to_vec()), nets, 300);
        assert_eq!(both.verify(&presented(b"{}")), Err(OriginError::Missing));
    }

    #[test]
    fn an_app_without_any_check_accepts_nothing() {
        assert_eq!(OriginCheck::default().verify(&presented(b"{}")), Err(OriginError::NotConfigured));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let check = OriginCheck::new(Some(SECRET.to_vec()), Vec::new(), 300);
        assert!(!format!("{check:?}").contains("shared-secret"));
    }
}
