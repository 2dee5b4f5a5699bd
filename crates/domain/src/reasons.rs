//! Why a delivery was not delivered (yet), typed: the provider's own code
//! (kept as the provider wrote it, with any words it added), the way there
//! failing, or pushgate's own reasons. Stored and shown as its text
//! ([`fmt::Display`], the same text pushgate has always written: `GET
//! /v1/pushes/{pushId}` and the metrics show it), read back by
//! [`Reason::parse`]; code decides on the variants, never on the text.
//! [`Reason::explanation`] says what a code means, in a sentence a person on
//! call can act on.

use crate::ProviderKind;
use std::fmt;

/// The provider was not reached, or did not answer: no code to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unreachable {
    /// No connection (network, DNS, TLS).
    ConnectionFailed,
    /// The connection dropped before the answer.
    ConnectionLost,
    /// No answer in time.
    Timeout,
    /// Google's token endpoint gave no access token (FCM).
    OAuthUnavailable,
}

impl Unreachable {
    const ALL: [Self; 4] = [Self::ConnectionFailed, Self::ConnectionLost, Self::Timeout, Self::OAuthUnavailable];

    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionFailed => "ConnectionFailed",
            Self::ConnectionLost => "ConnectionLost",
            Self::Timeout => "Timeout",
            Self::OAuthUnavailable => "OAuthUnavailable",
        }
    }
}

/// Why a delivery was skipped, failed, pruned or waits for another attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The provider's answer: its own code (`Unregistered`, `QUOTA_EXCEEDED`,
    /// `BadRequest`) and, when it added some, its words (`INVALID_ARGUMENT:
    /// <FCM's message>`).
    Provider {
        /// The code, as the provider wrote it (or pushgate named an answer without one).
        code: String,
        /// What the provider added, shown after the code.
        detail: Option<String>,
    },
    /// The provider was not reached or did not answer.
    Unreachable(Unreachable),
    /// pushgate could not authenticate to the provider with the app's
    /// credentials (an unusable signing key): the words say why.
    Credentials(String),
    /// Held while the app's provider is paused; the refusal that paused it.
    Paused(Box<Reason>),
    /// Given up after this many attempts, the last one refused for the reason.
    GaveUpAfter {
        /// The last attempt's reason.
        reason: Box<Reason>,
        /// Attempts made.
        attempts: u32,
    },
    /// Given up: the next try would be past the push's deadline.
    GaveUpAtDeadline(Box<Reason>),
    /// The provider called the token invalid, but the device registered
    /// again after the send: it was kept.
    KeptRegisteredAgain(Box<Reason>),
    /// The recipient has no device.
    NoDevice,
    /// The push's expiry was already past when it was accepted.
    ExpiredAtAccept,
    /// The push's deadline passed before an attempt.
    Expired,
    /// The push's app is gone from the configuration.
    AppNotConfigured,
    /// The device's provider is not configured for the app.
    ProviderNotConfigured(ProviderKind),
    /// The stored push could not be read back.
    UnreadablePush,
    /// The stored Web Push subscription could not be read back.
    UnreadableSubscription,
    /// The subscription's endpoint is no longer one the app allows.
    EndpointNotAllowed,
    /// A VoIP device gets no badge update (a VoIP push must report a call).
    NoVoipBadgeUpdate,
    /// A Live Activity push reaches ActivityKit tokens only, and they get
    /// nothing else (the fan-out never pairs them otherwise).
    NotForDeviceType,
    /// A busy room's held alert, not sent: the recipient read the room first.
    ReadBeforeSent,
    /// Routing decided not to reach the recipient (`client online`, `push
    /// turned off by the client`).
    Routed(String),
}

const PAUSED_PREFIX: &str = "paused: ";
const KEPT_SUFFIX: &str = "; the device registered again since, so it was kept";
const DEADLINE_SUFFIX: &str = " (gave up: the next try would be past the push's deadline)";
const ROUTED: [&str; 2] = ["push turned off by the client", "client online"];

impl Reason {
    /// A provider's code, with nothing added.
    pub fn provider(code: impl Into<String>) -> Self {
        Self::Provider { code: code.into(), detail: None }
    }

    /// A provider's code and the words it added.
    pub fn provider_with(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Provider { code: code.into(), detail: Some(detail.into()) }
    }

    /// The short code, for metric labels and explanations: the provider's
    /// code, `paused` for a held delivery, the inner reason's code for one
    /// given up or kept, and pushgate's own reasons as their text (a bounded set).
    pub fn code(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Provider { code, .. } => code.as_str().into(),
            Self::Unreachable(unreachable) => unreachable.as_str().into(),
            Self::Paused(_) => "paused".into(),
            Self::GaveUpAfter { reason, .. } | Self::GaveUpAtDeadline(reason) | Self::KeptRegisteredAgain(reason) => {
                reason.code()
            }
            Self::Credentials(_) => "Credentials".into(),
            own => own.to_string().into(),
        }
    }

    /// Whether the provider was not reached at all, as opposed to any answer.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }

    /// Reads a stored reason back. Total: a text pushgate does not know as
    /// one of its own is a provider's code (words after `": "` its detail).
    pub fn parse(text: &str) -> Self {
        if let Some(inner) = text.strip_prefix(PAUSED_PREFIX) {
            return Self::Paused(Box::new(Self::parse(inner)));
        }
        if let Some(inner) = text.strip_suffix(KEPT_SUFFIX) {
            return Self::KeptRegisteredAgain(Box::new(Self::parse(inner)));
        }
        if let Some(inner) = text.strip_suffix(DEADLINE_SUFFIX) {
            return Self::GaveUpAtDeadline(Box::new(Self::parse(inner)));
        }
        if let Some((inner, attempts)) = text
            .strip_suffix(" attempts)")
            .and_then(|rest| rest.rsplit_once(" (gave up after "))
            .and_then(|(inner, attempts)| Some((inner, attempts.parse().ok()?)))
        {
            return Self::GaveUpAfter { reason: Box::new(Self::parse(inner)), attempts };
        }
        if let Some(unreachable) = Unreachable::ALL.into_iter().find(|unreachable| unreachable.as_str() == text) {
            return Self::Unreachable(unreachable);
        }
        let own = [
            Self::NoDevice,
            Self::ExpiredAtAccept,
            Self::Expired,
            Self::AppNotConfigured,
            Self::UnreadablePush,
            Self::UnreadableSubscription,
            Self::EndpointNotAllowed,
            Self::NoVoipBadgeUpdate,
            Self::NotForDeviceType,
            Self::ReadBeforeSent,
        ]
        .into_iter()
        .chain(ProviderKind::ALL.iter().map(|provider| Self::ProviderNotConfigured(*provider)))
        .find(|own| own.to_string() == text);
        if let Some(own) = own {
            return own;
        }
        if ROUTED.contains(&text) {
            return Self::Routed(text.to_owned());
        }
        match text.split_once(": ") {
            Some((code, detail)) if !code.contains(' ') => Self::provider_with(code, detail),
            _ => Self::provider(text),
        }
    }

    /// A short explanation of the reason's code, if pushgate knows it;
    /// reasons pushgate writes in words itself need none.
    pub fn explanation(&self) -> Option<&'static str> {
        let code = match self {
            Self::Paused(inner) => {
                let refused_credentials = matches!(
                    inner.code().as_ref(),
                    "InvalidProviderToken" | "Forbidden" | "Unauthorized" | "UNAUTHENTICATED" | "BadCertificate"
                );
                return Some(if refused_credentials {
                    "held while the provider is paused for this app: it refused the app's credentials"
                } else {
                    "held while the provider is paused for this app"
                });
            }
            Self::Provider { code, .. } => code.as_str(),
            Self::Unreachable(unreachable) => unreachable.as_str(),
            Self::GaveUpAfter { reason, .. } | Self::GaveUpAtDeadline(reason) | Self::KeptRegisteredAgain(reason) => {
                return reason.explanation();
            }
            _ => return None,
        };
        // A code is its first word (an unknown answer may be words only).
        let code = code.split([':', ' ', ';']).next().unwrap_or_default();
        let explanation = match code {
            // APNs.
            "BadDeviceToken" => "the token is not valid here: often a sandbox token sent to production, or the reverse",
            "Unregistered" => "the app was uninstalled or the token is no longer active; the device is removed",
            "DeviceTokenNotForTopic" => "the token belongs to another app (bundle id) than the topic",
            "BadTopic" | "MissingTopic" => "the topic is not a bundle id the key or certificate may send to",
            "TopicDisallowed" => "this key or certificate may not send to the topic",
            "InvalidProviderToken" => "APNs refuses the signing key: check key_file, key_id and team_id",
            "ExpiredProviderToken" => "the APNs provider token was too old; a new one is signed",
            "BadCertificate" => "APNs refuses the client certificate",
            "BadCertificateEnvironment" => "the client certificate is for the other APNs environment",
            "BadCollapseId" => "the collapse id is longer than 64 bytes",
            "BadExpirationDate" | "BadPriority" | "BadPushType" | "BadMessageId" | "BadPath" | "MethodNotAllowed" => {
                "the request pushgate built was refused: please report it"
            }
            "PayloadEmpty" => "the payload was empty",
            "IdleTimeout" | "Shutdown" => "APNs closed the connection; sent again on a new one",
            "InternalServerError" | "INTERNAL" => "the provider had an internal error; tried again later",
            "ServiceUnavailable" | "UNAVAILABLE" | "BadGateway" | "GatewayTimeout" | "ServerError" => {
                "the provider is unavailable for now; tried again later"
            }
            "TooManyRequests" => "too many pushes too fast (to this device, or from this app); tried again later",
            "PayloadTooLarge" => "the payload is over the provider's size limit; the push fails, the device stays",
            "Forbidden" => "the provider refuses the app's credentials; the app's provider is paused, tokens are kept",
            // FCM.
            "UNREGISTERED" => "the app was uninstalled or the token expired; the device is removed",
            "INVALID_ARGUMENT" => "FCM refused the message or the token (a bad token removes the device)",
            "SENDER_ID_MISMATCH" => "the token belongs to another Firebase project; the device is removed for this app",
            "QUOTA_EXCEEDED" => "the Firebase project's sending quota is used up for now; tried again later",
            "THIRD_PARTY_AUTH_ERROR" => "the APNs or Web Push credentials in the Firebase project are wrong",
            "UNAUTHENTICATED" => "Google refuses the service account's access token",
            "OAuthUnavailable" | "OAuthBadAnswer" => {
                "Google's token endpoint did not give an access token; tried again"
            }
            // Web Push.
            "NotFound" | "Gone" => "the browser unsubscribed or the subscription expired; the device is removed",
            "Unauthorized" => "the push service refuses the app's VAPID key (vapid_private_key_file, subject)",
            "BadRequest" => "the push service refused the request (its own words follow the status)",
            "BadSubscriptionKeys" => "the stored subscription's keys are unusable; the device is removed",
            // The way there.
            "ConnectionFailed" => "pushgate could not connect to the provider (network, DNS, TLS); tried again later",
            "ConnectionLost" => "the connection dropped before the provider answered; tried again",
            "Timeout" => "the provider did not answer in time; tried again later",
            _ => return None,
        };
        Some(explanation)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provider { code, detail: None } => f.write_str(code),
            Self::Provider { code, detail: Some(detail) } => write!(f, "{code}: {detail}"),
            Self::Unreachable(unreachable) => f.write_str(unreachable.as_str()),
            Self::Credentials(words) | Self::Routed(words) => f.write_str(words),
            Self::Paused(reason) => write!(f, "{PAUSED_PREFIX}{reason}"),
            Self::GaveUpAfter { reason, attempts } => write!(f, "{reason} (gave up after {attempts} attempts)"),
            Self::GaveUpAtDeadline(reason) => write!(f, "{reason}{DEADLINE_SUFFIX}"),
            Self::KeptRegisteredAgain(reason) => write!(f, "{reason}{KEPT_SUFFIX}"),
            Self::NoDevice => f.write_str("no registered device"),
            Self::ExpiredAtAccept => f.write_str("expired before it was accepted"),
            Self::Expired => f.write_str("expired before it could be delivered"),
            Self::AppNotConfigured => f.write_str("the app is no longer configured"),
            Self::ProviderNotConfigured(ProviderKind::Apns) => f.write_str("APNs is not configured for this app"),
            Self::ProviderNotConfigured(ProviderKind::Fcm) => f.write_str("FCM is not configured for this app"),
            Self::ProviderNotConfigured(ProviderKind::WebPush) => {
                f.write_str("Web Push is not configured for this app")
            }
            Self::UnreadablePush => f.write_str("the stored push is unreadable"),
            Self::UnreadableSubscription => f.write_str("the stored Web Push subscription is unreadable"),
            Self::EndpointNotAllowed => f.write_str("the subscription's endpoint is no longer allowed for this app"),
            Self::NoVoipBadgeUpdate => f.write_str("VoIP devices get no badge updates"),
            Self::NotForDeviceType => f.write_str("not a push this device type takes"),
            Self::ReadBeforeSent => f.write_str("the room was read before the held alert went out"),
        }
    }
}

/// A short explanation of a reason's text (a stored reason, a metric's
/// reason label), if pushgate knows its code.
pub fn explain_reason(reason: &str) -> Option<&'static str> {
    Reason::parse(reason).explanation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_explained_with_what_follows_them_ignored() {
        assert!(explain_reason("Unregistered").is_some_and(|text| text.contains("uninstalled")));
        assert!(explain_reason("BadRequest: 400 Invalid Topic").is_some_and(|text| text.contains("push service")));
        assert!(explain_reason("UNREGISTERED").is_some());
        assert!(explain_reason("paused: InvalidProviderToken").is_some_and(|text| text.contains("credentials")));
        assert!(explain_reason("TooManyRequests (gave up after 3 attempts)").is_some_and(|text| text.contains("fast")));
        assert_eq!(explain_reason("no registered device"), None, "pushgate's own words need none");
    }

    #[test]
    fn every_reason_reads_back_from_its_text() {
        let provider = Reason::provider("Unregistered");
        let reasons = [
            provider.clone(),
            Reason::provider_with("INVALID_ARGUMENT", "Invalid value at 'message.android.ttl'"),
            Reason::provider_with("BadRequest", "400 Invalid Topic"),
            Reason::Unreachable(Unreachable::Timeout),
            Reason::Paused(Box::new(Reason::provider("InvalidProviderToken"))),
            Reason::GaveUpAfter { reason: Box::new(Reason::Unreachable(Unreachable::ConnectionLost)), attempts: 5 },
            Reason::GaveUpAtDeadline(Box::new(Reason::provider("TooManyRequests"))),
            Reason::KeptRegisteredAgain(Box::new(provider)),
            Reason::NoDevice,
            Reason::ExpiredAtAccept,
            Reason::Expired,
            Reason::AppNotConfigured,
            Reason::ProviderNotConfigured(ProviderKind::WebPush),
            Reason::UnreadablePush,
            Reason::UnreadableSubscription,
            Reason::EndpointNotAllowed,
            Reason::NoVoipBadgeUpdate,
            Reason::NotForDeviceType,
            Reason::ReadBeforeSent,
            Reason::Routed("client online".into()),
        ];
        for reason in reasons {
            assert_eq!(Reason::parse(&reason.to_string()), reason, "{reason}");
        }
    }

    #[test]
    fn the_code_is_the_providers_own_and_bounded_for_pushgates() {
        assert_eq!(Reason::provider_with("INVALID_ARGUMENT", "anything at all").code(), "INVALID_ARGUMENT");
        assert_eq!(Reason::Paused(Box::new(Reason::provider("Forbidden"))).code(), "paused");
        let gave_up = Reason::GaveUpAfter { reason: Box::new(Reason::provider("QUOTA_EXCEEDED")), attempts: 9 };
        assert_eq!(gave_up.code(), "QUOTA_EXCEEDED", "the attempt count stays out of the label");
        assert_eq!(Reason::ProviderNotConfigured(ProviderKind::Apns).code(), "APNs is not configured for this app");
        assert!(Reason::Unreachable(Unreachable::OAuthUnavailable).is_unreachable());
        assert!(!Reason::provider("TooManyRequests").is_unreachable());
    }
}
