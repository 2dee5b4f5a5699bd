//! Devices: the kinds IMKIT's `/me/subscribe` knows and the tokens each carries.

use crate::ParseError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;

/// The `type` of a subscribed device, exactly as IMKIT's `/me/subscribe` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// An iOS app receiving ordinary notifications through APNs.
    Ios,
    /// An iOS app receiving VoIP pushes through PushKit (APNs push type `voip`).
    IosVoip,
    /// An Android app; the token is an FCM registration token.
    Android,
    /// Any FCM client; `android` and `fcm` tokens are the same kind of token.
    Fcm,
    /// A browser; the token is a Web Push subscription.
    Web,
    /// An app receiving through a UnifiedPush distributor (Android without
    /// Google services); the token is a Web Push subscription too.
    UnifiedPush,
    /// pushgate's: a Live Activity's update token (ActivityKit's
    /// `pushTokenUpdates`); the device id is the activity's id, so a client
    /// has one per activity. Reached only by Live Activity pushes.
    IosLiveActivity,
    /// pushgate's: an app install's push-to-start token (ActivityKit's
    /// `pushToStartTokenUpdates`, iOS 17.2+). Reached only by a Live
    /// Activity's `start`.
    IosPushToStart,
    /// pushgate's: a WidgetKit push token (iOS 26): `widgets` pushes only.
    IosWidgets,
    /// pushgate's: a Location Push Service Extension's token: `location` pushes only.
    IosLocation,
    /// pushgate's: a PushKit complication token (watchOS): `complication` pushes only.
    IosComplication,
    /// pushgate's: a PushKit File Provider token: `fileprovider` pushes only.
    IosFileProvider,
    /// pushgate's: a Push to Talk channel's token: `pushtotalk` pushes only.
    IosPushToTalk,
}

/// Which provider token space a token lives in. Two device types that share a
/// kind (`android` and `fcm`) share tokens, so a token can only be bound once
/// per kind and app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// APNs device tokens for ordinary pushes.
    Apns,
    /// PushKit (VoIP) tokens, which differ from the same device's APNs token.
    ApnsVoip,
    /// FCM registration tokens.
    Fcm,
    /// Web Push subscriptions.
    WebPush,
    /// Tokens of one APNs push type each (ActivityKit's, WidgetKit's, a
    /// location extension's, PushKit's complication and File Provider
    /// tokens, Push to Talk's): only pushes of their type go to them, and
    /// they get nothing else.
    ApnsDedicated,
}

impl DeviceType {
    /// Every device type, in the order the error messages list them.
    pub const ALL: [DeviceType; 13] = [
        Self::Ios,
        Self::IosVoip,
        Self::Android,
        Self::Fcm,
        Self::Web,
        Self::UnifiedPush,
        Self::IosLiveActivity,
        Self::IosPushToStart,
        Self::IosWidgets,
        Self::IosLocation,
        Self::IosComplication,
        Self::IosFileProvider,
        Self::IosPushToTalk,
    ];

    /// Parses the IMKIT spelling (`ios`, `ios-voip`, `android`, `fcm`, `web`),
    /// and pushgate's (`unifiedpush`, the dedicated APNs tokens' `ios-…`).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|candidate| candidate.as_str() == raw).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
            ParseError::new(format!("type must be one of {}", known.join(", ")))
        })
    }

    /// The IMKIT spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ios => "ios",
            Self::IosVoip => "ios-voip",
            Self::Android => "android",
            Self::Fcm => "fcm",
            Self::Web => "web",
            Self::UnifiedPush => "unifiedpush",
            Self::IosLiveActivity => "ios-liveactivity",
            Self::IosPushToStart => "ios-pushtostart",
            Self::IosWidgets => "ios-widgets",
            Self::IosLocation => "ios-location",
            Self::IosComplication => "ios-complication",
            Self::IosFileProvider => "ios-fileprovider",
            Self::IosPushToTalk => "ios-pushtotalk",
        }
    }

    /// The token space this device type's tokens belong to.
    pub fn token_kind(self) -> TokenKind {
        match self {
            Self::Ios => TokenKind::Apns,
            Self::IosVoip => TokenKind::ApnsVoip,
            Self::Android | Self::Fcm => TokenKind::Fcm,
            Self::Web | Self::UnifiedPush => TokenKind::WebPush,
            Self::IosLiveActivity
            | Self::IosPushToStart
            | Self::IosWidgets
            | Self::IosLocation
            | Self::IosComplication
            | Self::IosFileProvider
            | Self::IosPushToTalk => TokenKind::ApnsDedicated,
        }
    }

    /// Whether devices of this type are reached through APNs, which is the
    /// only provider with separate production and sandbox environments.
    pub fn is_apple(self) -> bool {
        matches!(self.token_kind(), TokenKind::Apns | TokenKind::ApnsVoip | TokenKind::ApnsDedicated)
    }

    /// Whether the device is a token of one APNs push type, which only
    /// pushes of that type reach (and which gets nothing else).
    pub fn is_dedicated(self) -> bool {
        self.token_kind() == TokenKind::ApnsDedicated
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TokenKind {
    /// A stable name, used as a storage key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apns => "apns",
            Self::ApnsVoip => "apns-voip",
            Self::Fcm => "fcm",
            Self::WebPush => "webpush",
            Self::ApnsDedicated => "apns-dedicated",
        }
    }
}

/// A push token that has been checked against its device type.
///
/// APNs tokens are stored in lower-case hex; a Web Push subscription is stored
/// as canonical JSON (`{"endpoint", "keys": {"p256dh", "auth"}}`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PushToken(String);

/// APNs documents device tokens as opaque and of variable length (32 bytes
/// today); we accept 32 to 100 bytes of hex.
const APNS_TOKEN_HEX_LEN: std::ops::RangeInclusive<usize> = 64..=200;
/// FCM registration tokens are around 160 characters; the bound is generous.
const FCM_TOKEN_MAX_LEN: usize = 4096;

impl PushToken {
    /// Parses a token as the given device type carries it.
    pub fn parse(device_type: DeviceType, raw: &str) -> Result<Self, ParseError> {
        match device_type.token_kind() {
            TokenKind::Apns | TokenKind::ApnsVoip | TokenKind::ApnsDedicated => parse_apns_token(raw),
            TokenKind::Fcm => parse_fcm_token(raw),
            TokenKind::WebPush => {
                let subscription = WebPushSubscription::parse_json(raw)?;
                Ok(Self(subscription.to_canonical_json()))
            }
        }
    }

    /// Parses a Web Push subscription given as a JSON object rather than a string.
    pub fn from_web_subscription(value: &serde_json::Value) -> Result<Self, ParseError> {
        let subscription = WebPushSubscription::parse_value(value)?;
        Ok(Self(subscription.to_canonical_json()))
    }

    /// The Web Push subscription a `web` device's token holds.
    pub fn web_subscription(&self) -> Option<WebPushSubscription> {
        WebPushSubscription::parse_json(&self.0).ok()
    }

    /// Wraps a token read back from our own store, where it was stored already parsed.
    pub fn from_trusted_storage(stored: String) -> Self {
        Self(stored)
    }

    /// The token as sent to the provider (or, for Web Push, the stored subscription JSON).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Never print a whole token: it is a credential for pushing to someone's phone.
impl fmt::Debug for PushToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PushToken({})", mask_token(&self.0))
    }
}

fn parse_apns_token(raw: &str) -> Result<PushToken, ParseError> {
    let expected = "token must be an APNs device token: 64 to 200 hexadecimal characters";
    if !APNS_TOKEN_HEX_LEN.contains(&raw.len())
        || !raw.len().is_multiple_of(2)
        || !raw.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ParseError::new(expected));
    }
    Ok(PushToken(raw.to_ascii_lowercase()))
}

fn parse_fcm_token(raw: &str) -> Result<PushToken, ParseError> {
    if raw.is_empty() || raw.len() > FCM_TOKEN_MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::new(
            "token must be an FCM registration token: 1 to 4096 printable ASCII characters without spaces",
        ));
    }
    Ok(PushToken(raw.to_owned()))
}

/// A browser's `PushSubscription`: where to post, and the keys to encrypt with (RFC 8291).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPushSubscription {
    /// The push service URL to POST to: `https`, or `http` where the app
    /// allows it ([`WebPushEndpoints`] decides, per app).
    pub endpoint: url::Url,
    /// The browser's P-256 public key, uncompressed (65 bytes), base64url without padding.
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url without padding.
    pub auth: String,
}

impl WebPushSubscription {
    fn parse_json(raw: &str) -> Result<Self, ParseError> {
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|_| {
            ParseError::new("token must be a Web Push subscription: {\"endpoint\", \"keys\": {\"p256dh\", \"auth\"}}")
        })?;
        Self::parse_value(&value)
    }

    fn parse_value(value: &serde_json::Value) -> Result<Self, ParseError> {
        let field = |pointer: &str, name: &str| {
            value
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| ParseError::new(format!("token.{name} is required and must be a string")))
        };
        let endpoint = url::Url::parse(field("/endpoint", "endpoint")?)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http") && url.host().is_some())
            .ok_or_else(|| ParseError::new("token.endpoint must be an https URL"))?;
        let p256dh = decode_key(field("/keys/p256dh", "keys.p256dh")?, 65)
            .filter(|bytes| bytes.first() == Some(&0x04) && p256::PublicKey::from_sec1_bytes(bytes).is_ok())
            .ok_or_else(|| {
                ParseError::new(
                    "token.keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url, on the curve)",
                )
            })?;
        let auth = decode_key(field("/keys/auth", "keys.auth")?, 16)
            .ok_or_else(|| ParseError::new("token.keys.auth must be a 16-byte secret (base64url)"))?;
        // Browsers send `expirationTime` (Unix ms, or null); it is not kept.
        if !value.get("expirationTime").is_none_or(|time| time.is_null() || time.is_number()) {
            return Err(ParseError::new("token.expirationTime must be a number (Unix ms) or null"));
        }
        Ok(Self { endpoint, p256dh: URL_SAFE_NO_PAD.encode(p256dh), auth: URL_SAFE_NO_PAD.encode(auth) })
    }

    fn to_canonical_json(&self) -> String {
        serde_json::json!({
            "endpoint": self.endpoint.as_str(),
            "keys": { "p256dh": self.p256dh, "auth": self.auth },
        })
        .to_string()
    }
}

/// A device's key for private payloads (`pushKey` on `/me/subscribe`): the
/// app's P-256 public key (uncompressed) and 16-byte auth secret, as a
/// browser's PushSubscription carries them, so content can be encrypted to
/// the device with RFC 8291 (`aes128gcm`). Public values only: pushgate never
/// holds the private key. Shown masked (`Debug` included): the auth secret
/// is the one shared secret of the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct PushKey {
    p256dh: String,
    auth: String,
}

impl PushKey {
    /// Parses `pushKey` (`{"p256dh", "auth"}`, base64url with or without
    /// padding); errors name the field.
    pub fn parse(value: &serde_json::Value) -> Result<Self, ParseError> {
        let field = |name: &str| {
            value
                .get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| ParseError::new(format!("pushKey.{name} is required and must be a string")))
        };
        if !value.is_object() {
            return Err(ParseError::new("pushKey must be an object: {\"p256dh\", \"auth\"}"));
        }
        let p256dh = decode_key(field("p256dh")?, 65)
            .filter(|bytes| bytes.first() == Some(&0x04) && p256::PublicKey::from_sec1_bytes(bytes).is_ok())
            .ok_or_else(|| {
                ParseError::new(
                    "pushKey.p256dh must be an uncompressed P-256 public key (65 bytes, base64url, on the curve)",
                )
            })?;
        let auth = decode_key(field("auth")?, 16)
            .ok_or_else(|| ParseError::new("pushKey.auth must be a 16-byte secret (base64url)"))?;
        Ok(Self { p256dh: URL_SAFE_NO_PAD.encode(p256dh), auth: URL_SAFE_NO_PAD.encode(auth) })
    }

    /// The public key, base64url without padding.
    pub fn p256dh(&self) -> &str {
        &self.p256dh
    }

    /// The auth secret, base64url without padding.
    pub fn auth(&self) -> &str {
        &self.auth
    }

    /// The stored form: `{"p256dh", "auth"}`.
    pub fn to_stored(&self) -> String {
        serde_json::json!({ "p256dh": self.p256dh, "auth": self.auth }).to_string()
    }

    /// Reads the stored form back (written by [`PushKey::to_stored`]).
    pub fn from_stored(stored: &str) -> Result<Self, ParseError> {
        let value: serde_json::Value =
            serde_json::from_str(stored).map_err(|_| ParseError::new("a stored pushKey is not JSON"))?;
        Self::parse(&value)
    }

    /// What a listing shows: the public key's end (it tells keys apart), and
    /// nothing of the auth secret.
    pub fn masked(&self) -> serde_json::Value {
        serde_json::json!({ "p256dh": mask_token(&self.p256dh), "auth": "********" })
    }
}

impl fmt::Debug for PushKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PushKey({})", self.masked())
    }
}

/// The hosts of the push services browsers subscribe with (`*.` matches
/// any subdomain): Google's (Chrome, Edge on Android), Mozilla's autopush
/// (Firefox), Apple's (Safari), Microsoft's WNS (Edge on Windows).
pub const KNOWN_PUSH_SERVICES: &[&str] = &[
    "fcm.googleapis.com",
    "android.googleapis.com",
    "*.push.services.mozilla.com",
    "web.push.apple.com",
    "*.push.apple.com",
    "*.notify.windows.com",
];

/// Where an app's Web Push subscriptions may point: a guard against server
/// side request forgery, since an endpoint is a URL a client hands over and
/// pushgate posts to. The known push services, the app's own
/// `allowed_hosts` (UnifiedPush distributors, test servers), and plain HTTP
/// only where the app allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebPushEndpoints {
    /// Hosts beyond [`KNOWN_PUSH_SERVICES`] (`*.` matches any subdomain).
    pub allowed_hosts: Vec<String>,
    /// Whether `http://` endpoints are allowed (test push services).
    pub allow_plain_http: bool,
}

impl WebPushEndpoints {
    /// Whether pushgate may post to `endpoint` for this app; the error says why not.
    pub fn check(&self, endpoint: &url::Url) -> Result<(), ParseError> {
        match endpoint.scheme() {
            "https" => {}
            "http" if self.allow_plain_http => {}
            _ => return Err(ParseError::new("token.endpoint must be an https URL")),
        }
        let host = endpoint.host_str().unwrap_or_default().to_ascii_lowercase();
        let allowed = KNOWN_PUSH_SERVICES.iter().copied().chain(self.allowed_hosts.iter().map(String::as_str));
        if allowed.into_iter().any(|pattern| host_matches(pattern, &host)) {
            Ok(())
        } else {
            Err(ParseError::new(format!(
                "token.endpoint: {host} is not a known push service nor one of this app's webpush.allowed_hosts"
            )))
        }
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(parent) => host.strip_suffix(parent).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// Browsers hand out base64url, sometimes with padding; both are accepted.
fn decode_key(encoded: &str, expected_len: usize) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok().filter(|bytes| bytes.len() == expected_len)
}

/// Shows the last 8 characters of a token and hides the rest. For a Web Push
/// subscription, the end of the endpoint is shown, since that identifies it.
pub fn mask_token(token: &str) -> String {
    const VISIBLE: usize = 8;
    let shown = serde_json::from_str::<serde_json::Value>(token)
        .ok()
        .and_then(|value| value.get("endpoint").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| token.to_owned());
    let chars: Vec<char> = shown.chars().collect();
    if chars.len() <= VISIBLE {
        return "*".repeat(chars.len());
    }
    let tail: String = chars[chars.len() - VISIBLE..].iter().collect();
    format!("********{tail}")
}

/// Which APNs environment an iOS token was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// `api.push.apple.com`: App Store and TestFlight builds.
    Production,
    /// `api.sandbox.push.apple.com`: development builds.
    Sandbox,
}

impl Environment {
    /// Parses `production` or `sandbox`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "production" => Ok(Self::Production),
            "sandbox" => Ok(Self::Sandbox),
            _ => Err(ParseError::new("environment must be production or sandbox")),
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
        }
    }
}

/// A BCP 47 language tag such as `en`, `zh-TW` or `zh-Hant-TW`, in canonical case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locale(String);

impl Locale {
    /// Parses a language tag; `_` is accepted as a separator (`zh_TW`, as
    /// Android and iOS often report it) and the result uses `-`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError::new("locale must be a BCP 47 language tag such as en, zh-TW or ja");
        if raw.is_empty() || raw.len() > 35 {
            return Err(invalid());
        }
        let mut canonical = Vec::new();
        for (index, subtag) in raw.split(['-', '_']).enumerate() {
            if subtag.is_empty() || subtag.len() > 8 || !subtag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid());
            }
            let normalized = match (index, subtag.len()) {
                (0, 2..=3) if subtag.bytes().all(|b| b.is_ascii_alphabetic()) => subtag.to_ascii_lowercase(),
                (0, _) => return Err(invalid()),
                (_, 4) if subtag.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    let mut script = subtag.to_ascii_lowercase();
                    script[..1].make_ascii_uppercase();
                    script
                }
                (_, 2) => subtag.to_ascii_uppercase(),
                _ => subtag.to_ascii_lowercase(),
            };
            canonical.push(normalized);
        }
        Ok(Self(canonical.join("-")))
    }

    /// The tag in canonical case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An IANA time zone name known to the bundled time zone database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeZoneName(String);

impl TimeZoneName {
    /// Parses an IANA name such as `Asia/Taipei`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        // The database is compiled into the binary (jiff's `tzdb-bundle-always`),
        // so the answer does not depend on the machine's /usr/share/zoneinfo.
        if raw.is_empty() || raw.len() > 64 || jiff::tz::db().get(raw).is_err() {
            return Err(ParseError::new("timezone must be an IANA time zone name such as Asia/Taipei"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The IANA name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APNS_TOKEN: &str = "740F4707BEBCF74F9B7C25D48E3358945F6AA01DA5DDB387462C7EAF61BB78AD";

    /// A browser's public key: a point on P-256 (the generator, here).
    fn browser_key() -> Vec<u8> {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        let secret = p256::SecretKey::from_slice(&[1u8; 32]).expect("a scalar");
        secret.public_key().to_encoded_point(false).as_bytes().to_vec()
    }

    fn web_subscription(endpoint: &str) -> String {
        let p256dh = URL_SAFE_NO_PAD.encode(browser_key());
        let auth = URL_SAFE_NO_PAD.encode([7u8; 16]);
        format!(r#"{{"endpoint":"{endpoint}","keys":{{"p256dh":"{p256dh}","auth":"{auth}"}}}}"#)
    }

    #[test]
    fn a_push_key_is_a_point_on_the_curve_and_a_16_byte_secret_and_never_shown_whole() {
        let p256dh = URL_SAFE_NO_PAD.encode(browser_key());
        let auth = URL_SAFE_NO_PAD.encode([7u8; 16]);
        let key = PushKey::parse(&serde_json::json!({ "p256dh": p256dh, "auth": format!("{auth}==") })).expect("a key");
        assert_eq!((key.p256dh(), key.auth()), (p256dh.as_str(), auth.as_str()), "padding dropped");
        assert_eq!(PushKey::from_stored(&key.to_stored()), Ok(key.clone()));
        let shown = format!("{key:?}");
        assert!(!shown.contains(&auth) && !shown.contains(&p256dh[..40]), "{shown}");
        let mut off_curve = browser_key();
        off_curve[64] ^= 1;
        for (value, message) in [
            (serde_json::json!("text"), "pushKey must be an object: {\"p256dh\", \"auth\"}"),
            (serde_json::json!({ "auth": auth }), "pushKey.p256dh is required and must be a string"),
            (
                serde_json::json!({ "p256dh": URL_SAFE_NO_PAD.encode(off_curve), "auth": auth }),
                "pushKey.p256dh must be an uncompressed P-256 public key (65 bytes, base64url, on the curve)",
            ),
            (
                serde_json::json!({ "p256dh": p256dh, "auth": URL_SAFE_NO_PAD.encode([7u8; 15]) }),
                "pushKey.auth must be a 16-byte secret (base64url)",
            ),
        ] {
            assert_eq!(PushKey::parse(&value).map_err(|error| error.to_string()), Err(message.to_owned()));
        }
    }

    #[test]
    fn every_imkit_device_type_round_trips() {
        for device_type in DeviceType::ALL {
            assert_eq!(DeviceType::parse(device_type.as_str()), Ok(device_type));
        }
    }

    #[test]
    fn an_unknown_device_type_names_the_accepted_ones() {
        let error = DeviceType::parse("windows").unwrap_err();
        assert_eq!(
            error.0,
            "type must be one of ios, ios-voip, android, fcm, web, unifiedpush, ios-liveactivity, ios-pushtostart, \
             ios-widgets, ios-location, ios-complication, ios-fileprovider, ios-pushtotalk"
        );
    }

    #[test]
    fn android_and_fcm_tokens_share_one_token_space() {
        assert_eq!(DeviceType::Android.token_kind(), DeviceType::Fcm.token_kind());
        assert_ne!(DeviceType::Ios.token_kind(), DeviceType::IosVoip.token_kind());
    }

    #[test]
    fn an_apns_token_is_stored_in_lower_case() {
        let token = PushToken::parse(DeviceType::Ios, APNS_TOKEN).expect("valid token");
        assert_eq!(token.as_str(), APNS_TOKEN.to_ascii_lowercase());
    }

    #[test]
    fn an_apns_token_with_odd_length_is_rejected() {
        assert!(PushToken::parse(DeviceType::Ios, &APNS_TOKEN[1..]).is_err());
    }

    #[test]
    fn an_apns_token_that_is_not_hex_is_rejected() {
        let not_hex = APNS_TOKEN.replace('F', "G");
        assert!(PushToken::parse(DeviceType::IosVoip, &not_hex).is_err());
    }

    #[test]
    fn an_fcm_token_with_a_space_is_rejected() {
        assert!(PushToken::parse(DeviceType::Fcm, "abc def").is_err());
        assert!(PushToken::parse(DeviceType::Android, "dGVzdDp0b2tlbg:APA91b-_x").is_ok());
    }

    #[test]
    fn a_web_subscription_is_stored_as_canonical_json() {
        let raw = web_subscription("https://push.example.net/send/abc");
        let token = PushToken::parse(DeviceType::Web, &raw).expect("valid subscription");
        let value: serde_json::Value = serde_json::from_str(token.as_str()).expect("json");
        assert_eq!(value["endpoint"], "https://push.example.net/send/abc");
        assert_eq!(value["keys"]["auth"], URL_SAFE_NO_PAD.encode([7u8; 16]));
    }

    #[test]
    fn a_web_subscription_over_plain_http_needs_the_apps_consent() {
        let token = PushToken::parse(DeviceType::Web, &web_subscription("http://push.example.net/x")).expect("parsed");
        let endpoint = token.web_subscription().expect("a subscription").endpoint;
        let test_server = WebPushEndpoints { allowed_hosts: vec!["push.example.net".into()], allow_plain_http: false };
        assert_eq!(test_server.check(&endpoint).unwrap_err().0, "token.endpoint must be an https URL");
        assert_eq!(WebPushEndpoints { allow_plain_http: true, ..test_server }.check(&endpoint), Ok(()));
        assert!(PushToken::parse(DeviceType::Web, &web_subscription("ftp://push.example.net/x")).is_err());
    }

    #[test]
    fn only_known_push_services_and_the_apps_hosts_are_endpoints() {
        let check = |policy: &WebPushEndpoints, url: &str| policy.check(&url::Url::parse(url).expect("a URL"));
        let default = WebPushEndpoints::default();
        for known in [
            "https://fcm.googleapis.com/fcm/send/abc",
            "https://updates.push.services.mozilla.com/wpush/v2/abc",
            "https://web.push.apple.com/QGx",
            "https://wns2-par02p.notify.windows.com/w/?token=abc",
        ] {
            assert_eq!(check(&default, known), Ok(()), "{known}");
        }
        for refused in [
            "https://127.0.0.1/admin",
            "https://metadata.google.internal/",
            "https://evilpush.apple.com.example.org/",
            "https://notify.windows.com.evil/",
            "https://push.example.net/up/abc",
        ] {
            let error = check(&default, refused).expect_err(refused);
            assert!(error.0.contains("not a known push service"), "{error:?}");
        }
        let distributor = WebPushEndpoints { allowed_hosts: vec!["*.example.net".into()], allow_plain_http: false };
        assert_eq!(check(&distributor, "https://push.example.net/up/abc"), Ok(()));
        assert!(check(&distributor, "https://example.net/up/abc").is_err(), "a wildcard needs a subdomain");
    }

    #[test]
    fn a_p256dh_that_is_not_a_point_on_the_curve_is_rejected() {
        let raw = web_subscription("https://fcm.googleapis.com/x")
            .replace(&URL_SAFE_NO_PAD.encode(browser_key()), &URL_SAFE_NO_PAD.encode([4u8; 65]));
        let error = PushToken::parse(DeviceType::Web, &raw).unwrap_err();
        assert!(error.0.starts_with("token.keys.p256dh"), "{error:?}");
    }

    #[test]
    fn an_expiration_time_is_a_number_or_null() {
        let with = |time: &str| {
            let raw = web_subscription("https://fcm.googleapis.com/x");
            PushToken::parse(DeviceType::Web, &raw.replacen('{', &format!(r#"{{"expirationTime":{time},"#), 1))
        };
        assert!(with("null").is_ok() && with("1767225600000").is_ok());
        assert_eq!(with(r#""soon""#).unwrap_err().0, "token.expirationTime must be a number (Unix ms) or null");
    }

    #[test]
    fn a_web_subscription_with_a_short_auth_secret_is_rejected() {
        let raw = web_subscription("https://push.example.net/x").replace(&URL_SAFE_NO_PAD.encode([7u8; 16]), "AAAA");
        assert!(PushToken::parse(DeviceType::Web, &raw).is_err());
    }

    #[test]
    fn a_masked_token_shows_only_its_last_eight_characters() {
        assert_eq!(mask_token(APNS_TOKEN), "********61BB78AD");
        assert_eq!(mask_token("short"), "*****");
    }

    #[test]
    fn a_masked_web_subscription_shows_the_end_of_its_endpoint() {
        let token = PushToken::parse(DeviceType::Web, &web_subscription("https://push.example.net/send/abcdefgh1234"))
            .expect("valid subscription");
        assert_eq!(mask_token(token.as_str()), "********efgh1234");
    }

    #[test]
    fn a_token_debug_print_is_masked() {
        let token = PushToken::parse(DeviceType::Ios, APNS_TOKEN).expect("valid token");
        assert!(!format!("{token:?}").contains("740f4707"));
    }

    #[test]
    fn locales_are_put_in_canonical_case() {
        assert_eq!(Locale::parse("zh_tw").map(|l| l.0), Ok("zh-TW".into()));
        assert_eq!(Locale::parse("ZH-hant-tw").map(|l| l.0), Ok("zh-Hant-TW".into()));
        assert_eq!(Locale::parse("ja").map(|l| l.0), Ok("ja".into()));
        assert!(Locale::parse("1a").is_err());
        assert!(Locale::parse("en--US").is_err());
    }

    #[test]
    fn time_zones_must_be_known_iana_names() {
        assert!(TimeZoneName::parse("Asia/Taipei").is_ok());
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
    }
}
