//! `POST /push/liveactivity`: a Live Activity's start, update or end
//! (ActivityKit push notifications), and the APNs request each becomes.
//!
//! Apple's rules (*Starting and updating Live Activities with ActivityKit push
//! notifications*; the table in docs/apns-push-types.md): `apns-push-type:
//! liveactivity`, topic `<bundle id>.push-type.liveactivity`, priority 10 or
//! 5, token-based authentication only; `aps.timestamp` orders the updates (a
//! device ignores one older than what it shows), `aps.event` is `start`,
//! `update` or `end`; a start names `attributes-type` and `attributes` and
//! goes to push-to-start tokens; an update or end goes to the activity's own
//! token. Checked at accept, so no delivery meets a refusal it could have had
//! there.

use crate::{ApnsPriority, ApnsPush};
use crate::{DeviceId, MAX_APNS_BYTES, ParseError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// `aps.event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveActivityEvent {
    /// Starts a new activity on each push-to-start token (iOS 17.2+).
    Start,
    /// Updates the activity's content.
    Update,
    /// Ends the activity (its last content stays until `dismissalDate`).
    End,
}

impl LiveActivityEvent {
    /// Its `aps.event` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Update => "update",
            Self::End => "end",
        }
    }
}

/// The `payload` of `POST /push/liveactivity`, and its stored form (the
/// `timestamp` filled in at accept, so every attempt carries the same one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiveActivityPush {
    /// `start`, `update` or `end`.
    pub event: LiveActivityEvent,
    /// Update or end only this activity (the id its `ios-liveactivity`
    /// device was registered with); absent: every activity of the clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    /// `aps.content-state`: what the activity's `ContentState` decodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_state: Option<Map<String, Value>>,
    /// Start only: the `ActivityAttributes` type's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes_type: Option<String>,
    /// Start only: the attributes the new activity is made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// `aps.stale-date`, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_date: Option<u64>,
    /// End only: `aps.dismissal-date`, Unix seconds (past or now: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dismissal_date: Option<u64>,
    /// `aps.timestamp`, Unix seconds; the accept's time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// `aps.alert`: `title`, `body` (a string or `{"loc-key", "loc-args"}`) and `sound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Map<String, Value>>,
    /// `aps.relevance-score`: which of the app's activities leads (0 to 1, or more for ordering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relevance_score: Option<Number>,
    /// `apns-priority`: 10 (the default; counts against iOS's budget) or 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Start only (iOS 18+): ask the device to report the new activity's
    /// update token (`aps.input-push-token: 1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub input_push_token: bool,
}

/// Keys an activity's alert may have.
const ALERT_KEYS: [&str; 3] = ["title", "body", "sound"];

impl LiveActivityPush {
    /// Checks Apple's rules for the event; an error names the field.
    pub fn validate(&self) -> Result<(), ParseError> {
        let refuse = |message: String| Err(ParseError::new(message));
        let start = self.event == LiveActivityEvent::Start;
        if start {
            if self.activity_id.is_some() {
                return refuse(
                    "payload.activityId: a start goes to the clients' push-to-start tokens; the new activity has no \
                     id yet"
                        .into(),
                );
            }
            match &self.attributes_type {
                Some(name) if is_swift_type_name(name) => {}
                Some(name) => {
                    return refuse(format!("payload.attributesType: must be a Swift type name, not {name:?}"));
                }
                None => return refuse("payload.attributesType: a start must name its ActivityAttributes type".into()),
            }
            if self.attributes.is_none() {
                return refuse("payload.attributes: a start must give the activity's attributes".into());
            }
        } else {
            for (given, field) in [
                (self.attributes_type.is_some(), "attributesType"),
                (self.attributes.is_some(), "attributes"),
                (self.input_push_token, "inputPushToken"),
            ] {
                if given {
                    return refuse(format!("payload.{field}: only a start takes it"));
                }
            }
        }
        if self.content_state.is_none() && self.event != LiveActivityEvent::End {
            return refuse(format!("payload.contentState: a {} must give the content state", self.event.as_str()));
        }
        if self.dismissal_date.is_some() && self.event != LiveActivityEvent::End {
            return refuse("payload.dismissalDate: only an end takes it".into());
        }
        if let Some(id) = &self.activity_id {
            DeviceId::parse(id).map_err(|error| ParseError::new(format!("payload.activityId: {error}")))?;
        }
        if let Some(priority) = self.priority
            && self.apns_priority().is_none()
        {
            return refuse(format!("payload.priority: a Live Activity push is sent at 10 or 5, not {priority}"));
        }
        if self.relevance_score.as_ref().and_then(Number::as_f64).is_some_and(|score| score < 0.0) {
            return refuse("payload.relevanceScore: must not be negative".into());
        }
        if let Some(alert) = &self.alert {
            for (key, value) in alert {
                let valid = match key.as_str() {
                    "sound" => value.is_string() || value.is_object(),
                    "title" | "body" => value.is_string() || value.get("loc-key").is_some_and(Value::is_string),
                    _ => false,
                };
                if !valid {
                    return refuse(format!(
                        "payload.alert.{key}: an activity's alert has {} (title and body: a string or \
                         {{\"loc-key\", \"loc-args\"}})",
                        ALERT_KEYS.join(", ")
                    ));
                }
            }
        }
        let size = self.to_apns().payload.len();
        if size > MAX_APNS_BYTES {
            return refuse(format!("payload: the APNs payload is {size} bytes, more than APNs' {MAX_APNS_BYTES}"));
        }
        Ok(())
    }

    /// The tokens a push of this event goes to: push-to-start tokens for a
    /// start, the activities' own for an update or an end.
    pub fn device_type(&self) -> crate::DeviceType {
        match self.event {
            LiveActivityEvent::Start => crate::DeviceType::IosPushToStart,
            LiveActivityEvent::Update | LiveActivityEvent::End => crate::DeviceType::IosLiveActivity,
        }
    }

    /// The activity these deliveries are limited to, if any.
    pub fn activity(&self) -> Option<DeviceId> {
        self.activity_id.as_deref().and_then(|id| DeviceId::parse(id).ok())
    }

    fn apns_priority(&self) -> Option<ApnsPriority> {
        match self.priority {
            None | Some(10) => Some(ApnsPriority::Immediate),
            Some(5) => Some(ApnsPriority::PowerAware),
            Some(_) => None,
        }
    }

    /// The APNs request (the push type and topic follow from the device type).
    pub fn to_apns(&self) -> ApnsPush {
        let mut aps = Map::new();
        aps.insert("timestamp".into(), self.timestamp.unwrap_or_default().into());
        aps.insert("event".into(), self.event.as_str().into());
        if let Some(state) = &self.content_state {
            aps.insert("content-state".into(), Value::Object(state.clone()));
        }
        if let Some(name) = &self.attributes_type {
            aps.insert("attributes-type".into(), name.clone().into());
        }
        if let Some(attributes) = &self.attributes {
            aps.insert("attributes".into(), Value::Object(attributes.clone()));
        }
        if let Some(stale) = self.stale_date {
            aps.insert("stale-date".into(), stale.into());
        }
        if let Some(dismissal) = self.dismissal_date {
            aps.insert("dismissal-date".into(), dismissal.into());
        }
        if let Some(alert) = &self.alert {
            aps.insert("alert".into(), Value::Object(alert.clone()));
        }
        if let Some(score) = &self.relevance_score {
            aps.insert("relevance-score".into(), Value::Number(score.clone()));
        }
        if self.input_push_token {
            aps.insert("input-push-token".into(), 1.into());
        }
        let mut payload = Map::new();
        payload.insert("aps".into(), Value::Object(aps));
        ApnsPush {
            silent: false,
            priority: self.apns_priority(),
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
            topic: None,
            collapse_id: None,
            expiration: None,
        }
    }
}

/// A Swift type name as ActivityKit matches `attributes-type`: letters,
/// digits and `_`, not starting with a digit (a nested type with `.`).
fn is_swift_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            part.chars().next().is_some_and(|first| first.is_alphabetic() || first == '_')
                && part.chars().all(|char| char.is_alphanumeric() || char == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(payload: Value) -> LiveActivityPush {
        serde_json::from_value(payload).expect("a live activity push")
    }

    #[test]
    fn a_start_becomes_apples_start_payload() {
        let mut push = read(json!({
            "event": "start", "attributesType": "DeliveryAttributes", "attributes": { "order": "A-17" },
            "contentState": { "eta": 12 }, "alert": { "title": "Order A-17", "body": "On its way" },
            "staleDate": 1_800_000_600, "inputPushToken": true, "relevanceScore": 0.5
        }));
        push.timestamp = Some(1_800_000_000);
        assert_eq!(push.validate(), Ok(()));
        let apns = push.to_apns();
        let payload: Value = serde_json::from_slice(&apns.payload).expect("JSON");
        assert_eq!(
            payload,
            json!({ "aps": {
                "timestamp": 1_800_000_000, "event": "start", "content-state": { "eta": 12 },
                "attributes-type": "DeliveryAttributes", "attributes": { "order": "A-17" },
                "stale-date": 1_800_000_600, "alert": { "title": "Order A-17", "body": "On its way" },
                "relevance-score": 0.5, "input-push-token": 1
            } })
        );
        assert_eq!(apns.priority, Some(ApnsPriority::Immediate));
        assert!(!apns.silent);
    }

    #[test]
    fn each_event_is_held_to_its_rules() {
        for (payload, named) in [
            (json!({ "event": "start", "attributes": {}, "contentState": {} }), "payload.attributesType: a start"),
            (
                json!({ "event": "start", "attributesType": "9Bad", "attributes": {}, "contentState": {} }),
                "payload.attributesType: must be",
            ),
            (json!({ "event": "start", "attributesType": "A", "contentState": {} }), "payload.attributes: a start"),
            (
                json!({ "event": "start", "attributesType": "A", "attributes": {}, "contentState": {}, "activityId": "x" }),
                "payload.activityId: a start",
            ),
            (json!({ "event": "update" }), "payload.contentState: a update"),
            (json!({ "event": "update", "contentState": {}, "attributes": {} }), "payload.attributes: only a start"),
            (
                json!({ "event": "update", "contentState": {}, "dismissalDate": 1 }),
                "payload.dismissalDate: only an end",
            ),
            (json!({ "event": "end", "priority": 1 }), "payload.priority: a Live Activity push is sent at 10 or 5"),
            (json!({ "event": "end", "alert": { "subtitle": "x" } }), "payload.alert.subtitle: "),
            (json!({ "event": "end", "contentState": { "pad": "x".repeat(4_100) } }), "payload: the APNs payload is"),
        ] {
            let error = read(payload.clone()).validate().expect_err("refused").0;
            assert!(error.starts_with(named), "{payload}: {error}");
        }
        assert_eq!(read(json!({ "event": "end", "dismissalDate": 0, "priority": 5 })).validate(), Ok(()));
        assert!(serde_json::from_value::<LiveActivityPush>(json!({ "event": "pause" })).is_err());
        assert!(serde_json::from_value::<LiveActivityPush>(json!({ "event": "end", "state": {} })).is_err());
    }

    /// The APNs payload of each event, as snapshots.
    #[test]
    fn request_snapshots_for_each_event() {
        for (name, payload) in [
            (
                "start",
                json!({ "event": "start", "attributesType": "DeliveryAttributes", "attributes": { "order": "A-17" },
                              "contentState": { "etaMinutes": 20 }, "alert": { "title": "Order A-17", "body": "Accepted" },
                              "timestamp": 1_900_000_000, "inputPushToken": true }),
            ),
            (
                "update",
                json!({ "event": "update", "contentState": { "etaMinutes": 12 }, "staleDate": 1_900_000_900,
                               "relevanceScore": 75, "priority": 5, "timestamp": 1_900_000_060 }),
            ),
            (
                "end",
                json!({ "event": "end", "contentState": { "etaMinutes": 0 }, "dismissalDate": 1_900_003_600,
                            "timestamp": 1_900_000_120 }),
            ),
        ] {
            let push = read(payload);
            assert_eq!(push.validate(), Ok(()), "{name}");
            let apns = push.to_apns();
            let request = json!({
                "priority": apns.priority.map(ApnsPriority::as_str),
                "device_type": push.device_type().as_str(),
                "payload": serde_json::from_slice::<Value>(&apns.payload).expect("JSON"),
            });
            insta::assert_json_snapshot!(format!("liveactivity_{name}"), request);
        }
    }

    #[test]
    fn the_stored_form_reads_back() {
        let push = read(json!({ "event": "update", "activityId": "act-1", "contentState": { "score": "2-1" },
                                "timestamp": 5, "priority": 5 }));
        let stored = serde_json::to_string(&push).expect("JSON");
        assert_eq!(serde_json::from_str::<LiveActivityPush>(&stored).expect("reads back"), push);
        assert_eq!(push.activity().map(|id| id.as_str().to_owned()), Some("act-1".to_owned()));
    }
}
