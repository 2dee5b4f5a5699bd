//! RFC 8291 message encryption for push (`aes128gcm`, RFC 8188, one record),
//! on aws-lc-rs: Web Push bodies and private payloads for an app's
//! `pushKey`. Written here, not taken from `web-push-native` (which the
//! tests still decrypt with), because that crate's pure-Rust P-256 made
//! sealing the largest cost of a private delivery (pushgate-bench: about
//! 290 µs of a 395 µs delivery); aws-lc, already in the build for TLS, does
//! the key generation and agreement in a fraction of it.

use aws_lc_rs::{aead, agreement, hkdf, rand};

/// The record size written in the header: one record holds any push.
const RECORD_SIZE: u32 = 4096;
/// Length of an uncompressed P-256 point.
const POINT_LEN: usize = 65;

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// `plaintext` sealed to the receiver's public key `receiver` (an
/// uncompressed P-256 point) and 16-byte `auth` secret: salt, record size,
/// the sender's ephemeral public key, then AES-128-GCM over the plaintext
/// and its padding delimiter. `None` when the key is not a point on the
/// curve or the plaintext does not fit one record.
pub fn seal(plaintext: &[u8], receiver: &[u8], auth: &[u8; 16]) -> Option<Vec<u8>> {
    if receiver.len() != POINT_LEN || plaintext.len() + 17 > RECORD_SIZE as usize {
        return None;
    }
    let random = rand::SystemRandom::new();
    let mut salt = [0u8; 16];
    rand::SecureRandom::fill(&random, &mut salt).ok()?;
    let ephemeral = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &random).ok()?;
    let sender = ephemeral.compute_public_key().ok()?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, receiver);
    // RFC 8291 §3.3: IKM = HKDF(auth, ECDH, "WebPush: info" 0x00 receiver sender, 32).
    let ikm = agreement::agree_ephemeral(ephemeral, peer, (), |shared| {
        let info = [b"WebPush: info\0".as_slice(), receiver, sender.as_ref()];
        let mut ikm = [0u8; 32];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, auth).extract(shared);
        prk.expand(&info, Len(32)).and_then(|okm| okm.fill(&mut ikm)).map_err(|_| ())?;
        Ok(ikm)
    })
    .ok()?;
    // RFC 8188 §2.2: the content key and nonce from the salt and IKM.
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
    let derive = |label: &[u8], out: &mut [u8]| prk.expand(&[label], Len(out.len())).and_then(|okm| okm.fill(out));
    let (mut key, mut nonce) = ([0u8; 16], [0u8; 12]);
    derive(b"Content-Encoding: aes128gcm\0", &mut key).ok()?;
    derive(b"Content-Encoding: nonce\0", &mut nonce).ok()?;
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).ok()?);
    let mut body = Vec::with_capacity(16 + 4 + 1 + POINT_LEN + plaintext.len() + 1 + 16);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(POINT_LEN as u8);
    body.extend_from_slice(sender.as_ref());
    let mut record = Vec::with_capacity(plaintext.len() + 1 + 16);
    record.extend_from_slice(plaintext);
    // The last (and only) record's padding delimiter.
    record.push(2);
    key.seal_in_place_append_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::empty(), &mut record).ok()?;
    body.extend_from_slice(&record);
    Some(body)
}
