//! Per-recipient routing of chat pushes (the seed's "advanced push
//! strategy"): whether a recipient gets an alert, a quiet alert, only a
//! silent badge update, or nothing. Pure: the state and the time come in.

use crate::{DeliveryMode, ParseError, RoomNotify, TimeZoneName};
use jiff::civil::Time;

/// What an app does for a recipient who is online (in the app right now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnlinePolicy {
    /// Nothing is sent.
    Skip,
    /// Only the badge is updated, silently.
    #[default]
    Silent,
    /// The alert is sent as usual.
    Deliver,
}

impl OnlinePolicy {
    /// Parses `skip`, `silent` or `deliver`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        match raw {
            "skip" => Ok(Self::Skip),
            "silent" => Ok(Self::Silent),
            "deliver" => Ok(Self::Deliver),
            _ => Err(ParseError::new("must be skip, silent or deliver")),
        }
    }

    /// `skip`, `silent` or `deliver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Silent => "silent",
            Self::Deliver => "deliver",
        }
    }
}

/// A daily window, in the recipient's local time, during which pushes come
/// without sound. It may span midnight (`22:00` to `07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: Time,
    end: Time,
}

impl QuietHours {
    /// Parses `HH:MM` start and end; they must differ.
    pub fn parse(start: &str, end: &str) -> Result<Self, ParseError> {
        let time = |field: &str, raw: &str| {
            let valid = raw.len() == 5 && raw.as_bytes()[2] == b':';
            let parsed = valid.then(|| raw.parse::<Time>().ok()).flatten();
            parsed.ok_or_else(|| ParseError::new(format!("quietHours.{field} must be a time such as 22:00")))
        };
        let (start, end) = (time("start", start)?, time("end", end)?);
        if start == end {
            return Err(ParseError::new("quietHours.start and quietHours.end must differ"));
        }
        Ok(Self { start, end })
    }

    /// `HH:MM` of the start.
    pub fn start(&self) -> String {
        self.start.strftime("%H:%M").to_string()
    }

    /// `HH:MM` of the end.
    pub fn end(&self) -> String {
        self.end.strftime("%H:%M").to_string()
    }

    /// Whether a local time of day falls in the window (start included, end excluded).
    pub fn contains(&self, local: Time) -> bool {
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }
}

/// What is known of one recipient when a message arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientState {
    /// The client turned pushes off.
    pub push_disabled: bool,
    /// What the client wants from the message's room (a preference that ran
    /// out is `All`).
    pub room_notify: RoomNotify,
    /// The message mentions the client.
    pub mentioned: bool,
    /// The client reported being online, and that has not run out.
    pub online: bool,
    /// The client's quiet hours.
    pub quiet_hours: Option<QuietHours>,
    /// The client's time zone for quiet hours; UTC when unknown.
    pub timezone: Option<TimeZoneName>,
}

impl Default for RecipientState {
    fn default() -> Self {
        Self {
            push_disabled: false,
            room_notify: RoomNotify::All,
            mentioned: false,
            online: false,
            quiet_hours: None,
            timezone: None,
        }
    }
}

/// How a recipient is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The alert, as usual.
    Alert,
    /// The alert without sound (`interruption-level` passive): quiet hours.
    Quiet,
    /// Only a silent badge update; the reason says why.
    Silent(&'static str),
    /// Nothing; the reason says why.
    Skip(&'static str),
}

impl Route {
    /// How the recipient's deliveries go, or `None` for a skip.
    pub fn mode(self) -> Option<DeliveryMode> {
        match self {
            Self::Alert => Some(DeliveryMode::Alert),
            Self::Quiet => Some(DeliveryMode::Quiet),
            Self::Silent(_) => Some(DeliveryMode::Silent),
            Self::Skip(_) => None,
        }
    }

    /// Why the recipient is not alerted as usual.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Alert => None,
            Self::Quiet => Some("quiet hours"),
            Self::Silent(reason) | Self::Skip(reason) => Some(reason),
        }
    }
}

/// Decides how one recipient of a chat message is reached at `now_ms`:
/// pushes off → nothing; room muted → badge only; mentions only and not
/// mentioned → badge only; online → per the app's policy; quiet hours → a
/// quiet alert; else the alert.
pub fn route(state: &RecipientState, online: OnlinePolicy, now_ms: i64) -> Route {
    if state.push_disabled {
        return Route::Skip("push turned off by the client");
    }
    match state.room_notify {
        RoomNotify::None => return Route::Silent("room muted"),
        RoomNotify::Mentions if !state.mentioned => return Route::Silent("mentions only"),
        RoomNotify::Mentions | RoomNotify::All => {}
    }
    if state.online {
        match online {
            OnlinePolicy::Skip => return Route::Skip("client online"),
            OnlinePolicy::Silent => return Route::Silent("client online"),
            OnlinePolicy::Deliver => {}
        }
    }
    if let Some(quiet) = state.quiet_hours {
        let zone = state
            .timezone
            .as_ref()
            .and_then(|name| jiff::tz::TimeZone::get(name.as_str()).ok())
            .unwrap_or(jiff::tz::TimeZone::UTC);
        if let Ok(instant) = jiff::Timestamp::from_millisecond(now_ms)
            && quiet.contains(instant.to_zoned(zone).time())
        {
            return Route::Quiet;
        }
    }
    Route::Alert
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22 14:30 UTC = 22:30 in Taipei.
    const NOW_MS: i64 = 1_795_357_800_000;

    fn night() -> QuietHours {
        QuietHours::parse("22:00", "07:00").expect("valid")
    }

    fn taipei() -> Option<TimeZoneName> {
        Some(TimeZoneName::parse("Asia/Taipei").expect("zone"))
    }

    #[test]
    fn the_rules_apply_in_order() {
        let all = RecipientState {
            push_disabled: true,
            room_notify: RoomNotify::None,
            mentioned: true,
            online: true,
            quiet_hours: Some(night()),
            timezone: taipei(),
        };
        let unmuted = RecipientState { push_disabled: false, room_notify: RoomNotify::All, ..all.clone() };
        let cases = [
            (all.clone(), OnlinePolicy::Deliver, Route::Skip("push turned off by the client")),
            (
                RecipientState { push_disabled: false, ..all.clone() },
                OnlinePolicy::Deliver,
                Route::Silent("room muted"),
            ),
            (
                RecipientState { room_notify: RoomNotify::Mentions, mentioned: false, ..unmuted.clone() },
                OnlinePolicy::Deliver,
                Route::Silent("mentions only"),
            ),
            (
                RecipientState { room_notify: RoomNotify::Mentions, ..unmuted.clone() },
                OnlinePolicy::Deliver,
                Route::Quiet,
            ),
            (unmuted.clone(), OnlinePolicy::Skip, Route::Skip("client online")),
            (unmuted.clone(), OnlinePolicy::Silent, Route::Silent("client online")),
            (unmuted.clone(), OnlinePolicy::Deliver, Route::Quiet),
            (
                RecipientState { quiet_hours: Some(night()), timezone: None, ..RecipientState::default() },
                OnlinePolicy::Skip,
                Route::Alert,
            ),
            (RecipientState::default(), OnlinePolicy::Skip, Route::Alert),
        ];
        for (state, policy, expected) in cases {
            assert_eq!(route(&state, policy, NOW_MS), expected, "{state:?} with {policy:?}");
        }
    }

    #[test]
    fn quiet_hours_may_span_midnight_and_include_the_start_only() {
        let at = |raw: &str| raw.parse::<Time>().expect("time");
        let window = night();
        for (time, inside) in [
            ("21:59", false),
            ("22:00", true),
            ("23:59", true),
            ("00:00", true),
            ("06:59", true),
            ("07:00", false),
            ("12:00", false),
        ] {
            assert_eq!(window.contains(at(time)), inside, "{time}");
        }
        let lunch = QuietHours::parse("12:00", "13:30").expect("valid");
        assert!(lunch.contains(at("12:45")) && !lunch.contains(at("13:30")) && !lunch.contains(at("23:00")));
        assert_eq!((lunch.start(), lunch.end()), ("12:00".to_owned(), "13:30".to_owned()));
    }

    #[test]
    fn bad_quiet_hours_name_the_field() {
        assert_eq!(
            QuietHours::parse("25:00", "07:00").expect_err("bad").0,
            "quietHours.start must be a time such as 22:00"
        );
        assert_eq!(QuietHours::parse("22:00", "7").expect_err("bad").0, "quietHours.end must be a time such as 22:00");
        assert!(QuietHours::parse("22:00", "22:00").is_err());
    }

    #[test]
    fn the_time_zone_decides_the_local_time() {
        let state = RecipientState { quiet_hours: Some(night()), timezone: taipei(), ..RecipientState::default() };
        assert_eq!(route(&state, OnlinePolicy::Deliver, NOW_MS), Route::Quiet, "22:30 in Taipei");
        let in_utc = RecipientState { timezone: None, ..state };
        assert_eq!(route(&in_utc, OnlinePolicy::Deliver, NOW_MS), Route::Alert, "14:30 UTC");
    }
}
