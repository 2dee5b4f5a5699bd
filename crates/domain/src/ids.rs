//! Identifiers chosen by IMKIT or by the app: opaque strings with sane bounds.

use crate::ParseError;
use std::fmt;

/// Longest identifier we accept. IMKIT ids are short (Mongo ids, user names);
/// the bound keeps a hostile caller from filling the store with huge keys.
const MAX_ID_LEN: usize = 256;

fn parse_identifier(what: &str, raw: &str) -> Result<String, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::new(format!("{what} must not be empty")));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(ParseError::new(format!("{what} must be at most {MAX_ID_LEN} bytes")));
    }
    if raw.chars().any(char::is_control) {
        return Err(ParseError::new(format!("{what} must not contain control characters")));
    }
    if raw.trim() != raw {
        return Err(ParseError::new(format!("{what} must not start or end with white space")));
    }
    Ok(raw.to_owned())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Parses a ", $what, ": non-empty, at most 256 bytes, no control characters, no surrounding white space.")]
            pub fn parse(raw: &str) -> Result<Self, ParseError> {
                parse_identifier($what, raw).map(Self)
            }

            /// The identifier as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// An IMKIT app id (`appID` in callbacks), which selects one configured app.
    AppId,
    "app id"
);
identifier!(
    /// An IMKIT client (user) id.
    ClientId,
    "clientId"
);
identifier!(
    /// A device id chosen by the app, stable for one installation.
    DeviceId,
    "deviceId"
);
identifier!(
    /// An IMKIT chat room id (`room` in callbacks).
    RoomId,
    "room"
);
identifier!(
    /// An IMKIT message id (`_id` in callbacks): the idempotency key of a callback.
    MessageId,
    "_id"
);
identifier!(
    /// An A/B experiment's id, chosen by the app.
    ExperimentId,
    "experiment id"
);
identifier!(
    /// The name of a cross-domain badge source (`orders`, `events`, ...).
    BadgeSource,
    "badge source"
);

/// An accepted push's id: a UUIDv7 chosen when the push is accepted, so its
/// first 48 bits are the acceptance time (Unix ms). Stored and shown in the
/// UUID's hyphenated text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId(uuid::Uuid);

impl PushId {
    /// The id of a push accepted now: the caller gives the UUIDv7 (the
    /// domain reads no clock), such as `uuid::Uuid::now_v7()`.
    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }

    /// Parses the text form (`GET /v1/pushes/{pushId}`, a stored id).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        uuid::Uuid::try_parse(raw).map(Self).map_err(|_| ParseError::new("pushId must be a push id (a UUID)"))
    }

    /// When the push was accepted (Unix ms), read from the UUIDv7; `None`
    /// for an id of another UUID version.
    pub fn accepted_at_ms(&self) -> Option<i64> {
        let (seconds, nanos) = self.0.get_timestamp()?.to_unix();
        i64::try_from(seconds).ok()?.checked_mul(1000)?.checked_add(i64::from(nanos / 1_000_000))
    }
}

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_id_reads_back_from_its_text_with_its_acceptance_time() {
        let text = "019a1b2c-3d4e-7f00-8000-000000000001";
        let id = PushId::parse(text).expect("a UUIDv7");
        assert_eq!(id.to_string(), text);
        assert_eq!(id.accepted_at_ms(), Some(0x019a_1b2c_3d4e));
        assert!(PushId::parse("p1").is_err(), "not a UUID");
        let v4 = PushId::parse("6f1c2a4e-0b1d-4c3e-9f00-000000000001").expect("a UUIDv4");
        assert_eq!(v4.accepted_at_ms(), None, "only a UUIDv7 carries its time");
    }

    #[test]
    fn an_ordinary_client_id_is_accepted_as_given() {
        assert_eq!(ClientId::parse("user001").map(|c| c.to_string()), Ok("user001".into()));
    }

    #[test]
    fn an_empty_client_id_is_rejected() {
        assert_eq!(ClientId::parse("").unwrap_err().0, "clientId must not be empty");
    }

    #[test]
    fn an_id_with_a_newline_is_rejected() {
        assert!(DeviceId::parse("abc\ndef").is_err());
    }

    #[test]
    fn an_id_longer_than_the_bound_is_rejected() {
        assert!(ClientId::parse(&"x".repeat(257)).is_err());
        assert!(ClientId::parse(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn an_id_with_surrounding_space_is_rejected() {
        assert!(AppId::parse(" SampleApp").is_err());
    }
}
