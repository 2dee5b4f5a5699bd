//! What a provider's reason code means, in a sentence a person on call can
//! act on. The code itself stays what is stored, counted and matched on;
//! this is shown beside it (`GET /v1/pushes/{pushId}`, `pushgate push show`).

/// A short explanation of `reason` (`Unregistered`, `QUOTA_EXCEEDED`,
/// `BadRequest: 400 …`, `paused: InvalidProviderToken`), if pushgate knows
/// the code; reasons pushgate writes in words itself have none.
pub fn explain_reason(reason: &str) -> Option<&'static str> {
    let (paused, reason) = match reason.strip_prefix("paused: ") {
        Some(rest) => (true, rest),
        None => (false, reason),
    };
    let code = reason.split([':', ' ', ';']).next().unwrap_or_default();
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
        "OAuthUnavailable" | "OAuthBadAnswer" => "Google's token endpoint did not give an access token; tried again",
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
    Some(if paused {
        match code {
            "InvalidProviderToken" | "Forbidden" | "Unauthorized" | "UNAUTHENTICATED" | "BadCertificate" => {
                "held while the provider is paused for this app: it refused the app's credentials"
            }
            _ => "held while the provider is paused for this app",
        }
    } else {
        explanation
    })
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
        assert_eq!(explain_reason("no registered device"), None, "pushgate's own words need none");
    }
}
