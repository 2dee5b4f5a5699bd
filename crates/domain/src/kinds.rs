//! The closed sets the delivery queue passes around: what a push is, how a
//! recipient is reached, and which provider carries a delivery. Stored and
//! shown as their text form; everywhere else they are these types.

use crate::ParseError;
use std::fmt;

/// Defines a closed set with its text form, `as_str`, `parse` and `Display`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$variant_meta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The text form, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The value of a text form.
            pub fn parse(text: &str) -> Result<Self, ParseError> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    other => Err(ParseError::new(format!(concat!("unknown ", $what, " {:?}"), other))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// What an accepted push is; says how its stored request is read back.
    PushKind, "push kind" {
        /// `POST /push/push2clients`: a [`crate::CustomPush`].
        Custom => "custom",
        /// A PUSH_GENERIC (v2) callback: the message, badges computed here.
        Chat => "chat",
        /// A legacy PUSH (v1) callback: the message with IMKIT's badge and alert.
        ChatV1 => "chat-v1",
        /// The silent badge update of a read mark (what earlier versions
        /// sent; read back, it is a [`crate::PushRequest::BadgeUpdate`]).
        Badge => "badge",
        /// What a client's other devices get when it reads a room: the room
        /// to clear and the new badge.
        Clear => "clear",
        /// `POST /push/liveactivity`: a [`crate::LiveActivityPush`], to
        /// ActivityKit tokens only.
        LiveActivity => "liveactivity",
    }
);

text_enum!(
    /// How a routed recipient of a chat push is reached.
    DeliveryMode, "delivery mode" {
        /// The alert, as usual.
        Alert => "alert",
        /// The alert without sound (quiet hours).
        Quiet => "quiet",
        /// Only a silent badge update (muted room, online).
        Silent => "silent",
    }
);

text_enum!(
    /// What a client wants from a room (its room preference): every
    /// message's alert, only those that mention it, or none (muted). The
    /// room's unreads count in the badge whatever it wants (a muted room's
    /// as the app's `count_muted_rooms` says).
    RoomNotify, "room notify setting" {
        /// Every message alerts.
        All => "all",
        /// Only a message that mentions the client alerts; the others update the badge.
        Mentions => "mentions",
        /// No message alerts (muted); the badge is updated.
        None => "none",
    }
);

text_enum!(
    /// A push provider.
    ProviderKind, "provider" {
        /// Apple Push Notification service.
        Apns => "apns",
        /// Firebase Cloud Messaging (HTTP v1).
        Fcm => "fcm",
        /// Web Push (RFC 8030).
        WebPush => "webpush",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_text() {
        for kind in PushKind::ALL {
            assert_eq!(PushKind::parse(kind.as_str()), Ok(*kind));
        }
        for mode in DeliveryMode::ALL {
            assert_eq!(DeliveryMode::parse(&mode.to_string()), Ok(*mode));
        }
        for provider in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(provider.as_str()), Ok(*provider));
        }
        assert_eq!(PushKind::parse("chat-v1"), Ok(PushKind::ChatV1));
    }

    #[test]
    fn an_unknown_text_is_refused_by_name() {
        assert_eq!(PushKind::parse("promo").expect_err("unknown").0, "unknown push kind \"promo\"");
        assert!(DeliveryMode::parse("loud").is_err());
        assert!(ProviderKind::parse("hms").is_err());
    }
}

text_enum!(
    /// What an app's chat alerts carry to APNs and FCM (`[apps.privacy] mode`).
    PrivacyMode, "privacy mode" {
        /// The message in clear, as IMKIT's format has it.
        Off => "off",
        /// A device with a `pushKey` gets the message sealed to it (RFC 8291);
        /// one without gets what the fallback says.
        Encrypt => "encrypt",
        /// A neutral alert with the message's id and room: the app fetches the content.
        IdOnly => "id_only",
    }
);

text_enum!(
    /// What a device without a `pushKey` gets when the app encrypts (`[apps.privacy] fallback`).
    PrivacyFallback, "privacy fallback" {
        /// The message in clear (while an app's installs move to a version with a key).
        Clear => "clear",
        /// A neutral alert with the message's id and room.
        IdOnly => "id_only",
    }
);
