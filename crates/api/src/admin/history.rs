//! The console's charts: a ring of samples of this node's `/metrics`, one
//! every [`STEP`], the last hour of them.
//!
//! A sample is read from the very text `/metrics` renders, so a chart and a
//! Prometheus scrape can never disagree on a figure. Only the families the
//! console charts are kept (deliveries by provider, result and reason; the
//! accept routes' latency histogram).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Time between two samples.
pub const STEP: Duration = Duration::from_secs(10);

/// Samples kept: an hour's worth, plus the one the first interval starts from.
const KEPT: usize = 361;

/// The routes whose answer is an accept: IMKIT's callbacks and push2clients.
pub const ACCEPT_ROUTES: [&str; 3] = ["/imkit/push/v2", "/imkit/push", "/push/push2clients"];

/// One delivery series: an app's attempts to a provider with one result and reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    /// The app.
    pub app: String,
    /// `apns`, `fcm`, `webpush`, or `none` (no provider configured).
    pub provider: String,
    /// `delivered`, `retried`, `paused`, `failed`, `pruned` or `skipped`.
    pub result: String,
    /// The provider's short reason; empty for a delivery.
    pub reason: String,
}

/// What one reading of `/metrics` holds of what the console charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// When it was read, Unix ms.
    pub at_ms: i64,
    /// `pushgate_deliveries_total`, per series.
    pub attempts: HashMap<AttemptKey, f64>,
    /// The accept routes' `http_request_duration_seconds` buckets summed
    /// over those routes: upper bound (seconds) to cumulative count.
    pub accept_buckets: BTreeMap<OrderedBound, f64>,
    /// `pushgate_chat_alerts_total`, by app and kind (`message`, `summary`).
    pub chat_alerts: HashMap<(String, String), f64>,
}

/// A histogram bucket's upper bound, ordered (`+Inf` last).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderedBound(pub f64);

impl Eq for OrderedBound {}

impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Sample {
    /// Reads a sample out of the OpenMetrics text `/metrics` renders.
    pub fn parse(text: &str, at_ms: i64) -> Self {
        let mut sample = Self { at_ms, ..Self::default() };
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((name, labels, value)) = parse_line(line) else { continue };
            let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
            match name {
                "pushgate_deliveries_total" => {
                    let key = AttemptKey {
                        app: label("app"),
                        provider: label("provider"),
                        result: label("result"),
                        reason: label("reason"),
                    };
                    sample.attempts.insert(key, value);
                }
                "pushgate_chat_alerts_total" => {
                    sample.chat_alerts.insert((label("app"), label("kind")), value);
                }
                "pushgate_http_request_duration_seconds_bucket"
                    if ACCEPT_ROUTES.contains(&labels.get("route").map_or("", String::as_str))
                        && labels.get("method").is_some_and(|method| method == "POST") =>
                {
                    let bound = match labels.get("le").map(String::as_str) {
                        Some("+Inf") => f64::INFINITY,
                        Some(bound) => match bound.parse() {
                            Ok(bound) => bound,
                            Err(_) => continue,
                        },
                        None => continue,
                    };
                    *sample.accept_buckets.entry(OrderedBound(bound)).or_insert(0.0) += value;
                }
                _ => {}
            }
        }
        sample
    }
}

/// `name{label="value",...} value` (labels optional); `None` for anything else.
fn parse_line(line: &str) -> Option<(&str, HashMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = HashMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let end = loop {
            let (index, char) = chars.next()?;
            match char {
                '}' => break index,
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        };
        rest = &inner[end + 1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// The last hour of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Keeps a sample, dropping the oldest past an hour's worth.
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The kept samples and then `now`, oldest first.
    pub fn with_now(&self, now: Sample) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.iter().cloned().chain(std::iter::once(now)).collect()
    }
}

/// One chart series: the rate of a provider's attempts with one result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RateSeries {
    /// `apns`, `fcm`, `webpush` or `none`.
    pub provider: String,
    /// `delivered`, `retried`, `paused`, `failed`, `pruned` or `skipped`.
    pub result: String,
    /// Attempts per second in each interval (between two samples).
    #[serde(rename = "perSecond")]
    pub per_second: Vec<f64>,
}

/// Failures of one kind over the window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FailureCount {
    /// The provider.
    pub provider: String,
    /// `retried`, `paused`, `failed`, `pruned` or `skipped`.
    pub result: String,
    /// The provider's short reason.
    pub reason: String,
    /// What the reason means, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<&'static str>,
    /// How many in the window.
    pub count: u64,
}

/// The charts' figures over the kept samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Charts {
    /// Each interval's end, Unix ms.
    #[serde(rename = "timesMS")]
    pub times_ms: Vec<i64>,
    /// Deliveries per second by provider and result, per interval.
    pub deliveries: Vec<RateSeries>,
    /// Everything but a delivery, by provider, result and reason, over the whole window; most first.
    pub failures: Vec<FailureCount>,
    /// The accept routes' 95th percentile latency per interval, ms (the
    /// upper bound of its histogram bucket); `null` for an interval without accepts.
    #[serde(rename = "acceptP95MS")]
    pub accept_p95_ms: Vec<Option<f64>>,
    /// Accepts per second, per interval.
    pub accepts_per_second: Vec<f64>,
}

impl Charts {
    /// The figures between consecutive samples, counting only `app`'s
    /// deliveries when given (the accept latency is the node's).
    pub fn from_samples(samples: &[Sample], app: Option<&str>) -> Self {
        let in_scope = |key: &AttemptKey| app.is_none_or(|app| key.app == app);
        let intervals = samples.len().saturating_sub(1);
        let mut rates: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        let mut failures: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        let mut times_ms = Vec::with_capacity(intervals);
        let mut accept_p95_ms = Vec::with_capacity(intervals);
        let mut accepts_per_second = Vec::with_capacity(intervals);
        for (index, pair) in samples.windows(2).enumerate() {
            let (before, after) = (&pair[0], &pair[1]);
            let seconds = ((after.at_ms - before.at_ms) as f64 / 1000.0).max(0.001);
            times_ms.push(after.at_ms);
            for (key, value) in after.attempts.iter().filter(|(key, _)| in_scope(key)) {
                // A counter never falls; a lower figure means the process restarted.
                let added = (value - before.attempts.get(key).copied().unwrap_or(0.0)).max(0.0);
                let series = rates.entry((key.provider.clone(), key.result.clone())).or_default();
                series.resize(intervals, 0.0);
                series[index] += added / seconds;
                if key.result != "delivered" && added > 0.0 {
                    *failures.entry((key.provider.clone(), key.result.clone(), key.reason.clone())).or_default() +=
                        added;
                }
            }
            let added: Vec<(f64, f64)> = after
                .accept_buckets
                .iter()
                .map(|(bound, count)| {
                    (bound.0, (count - before.accept_buckets.get(bound).copied().unwrap_or(0.0)).max(0.0))
                })
                .collect();
            let total = added.last().map_or(0.0, |(_, count)| *count);
            accepts_per_second.push(total / seconds);
            accept_p95_ms.push((total > 0.0).then(|| {
                let wanted = total * 0.95;
                let bound = added.iter().find(|(_, count)| *count >= wanted).map_or(f64::INFINITY, |(bound, _)| *bound);
                // Past the last finite bucket, the last finite bound is all that is known.
                let bound = if bound.is_finite() {
                    bound
                } else {
                    added.iter().rev().map(|(bound, _)| *bound).find(|bound| bound.is_finite()).unwrap_or(0.0)
                };
                bound * 1000.0
            }));
        }
        let deliveries = rates
            .into_iter()
            .map(|((provider, result), mut per_second)| {
                per_second.resize(intervals, 0.0);
                RateSeries { provider, result, per_second }
            })
            .collect();
        let mut failures: Vec<FailureCount> = failures
            .into_iter()
            .map(|((provider, result, reason), count)| FailureCount {
                explanation: pushgate_domain::explain_reason(&reason),
                provider,
                result,
                reason,
                count: count.round() as u64,
            })
            .collect();
        failures.sort_by_key(|failure| std::cmp::Reverse(failure.count));
        Self { times_ms, deliveries, failures, accept_p95_ms, accepts_per_second }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP pushgate_deliveries Delivery attempts by provider, result and reason.
# TYPE pushgate_deliveries counter
pushgate_deliveries_total{app="A",provider="apns",result="delivered",reason=""} 4
pushgate_deliveries_total{app="A",provider="fcm",result="failed",reason="INVALID_ARGUMENT"} 1
pushgate_deliveries_total{app="B",provider="apns",result="delivered",reason=""} 10
pushgate_http_request_duration_seconds_bucket{le="0.001",method="POST",route="/push/push2clients"} 1
pushgate_http_request_duration_seconds_bucket{le="0.002",method="POST",route="/push/push2clients"} 3
pushgate_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/push/push2clients"} 4
pushgate_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/push/push2clients"} 9
pushgate_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/me/subscribe"} 9
"#;

    #[test]
    fn a_sample_keeps_the_charted_families_with_their_labels() {
        let sample = Sample::parse(TEXT, 1_000);
        let key = |app: &str, provider: &str, result: &str, reason: &str| AttemptKey {
            app: app.into(),
            provider: provider.into(),
            result: result.into(),
            reason: reason.into(),
        };
        assert_eq!(sample.attempts.len(), 3);
        assert_eq!(sample.attempts[&key("A", "fcm", "failed", "INVALID_ARGUMENT")], 1.0);
        assert_eq!(sample.attempts[&key("B", "apns", "delivered", "")], 10.0);
        let buckets: Vec<(f64, f64)> = sample.accept_buckets.iter().map(|(bound, count)| (bound.0, *count)).collect();
        assert_eq!(buckets, vec![(0.001, 1.0), (0.002, 3.0), (f64::INFINITY, 4.0)], "POST accepts only");
    }

    #[test]
    fn escaped_label_values_are_read_whole() {
        let (name, labels, value) =
            parse_line(r#"pushgate_deliveries_total{app="A",reason="say \"no\", twice\\"} 2"#).expect("a sample line");
        assert_eq!((name, value), ("pushgate_deliveries_total", 2.0));
        assert_eq!(labels["reason"], r#"say "no", twice\"#);
        assert!(parse_line(r#"pushgate_x{app="unterminated} 2"#).is_none());
    }

    #[test]
    fn charts_are_rates_between_samples_within_the_scope() {
        let first = Sample::parse("", 0);
        let second = Sample::parse(TEXT, 2_000);
        let charts = Charts::from_samples(&[first, second.clone()], Some("A"));
        assert_eq!(charts.times_ms, vec![2_000]);
        let delivered = charts.deliveries.iter().find(|series| series.result == "delivered").expect("delivered");
        assert_eq!((delivered.provider.as_str(), delivered.per_second.clone()), ("apns", vec![2.0]), "A's 4 in 2 s");
        assert_eq!(charts.failures.len(), 1);
        assert_eq!(charts.failures[0].reason, "INVALID_ARGUMENT");
        assert_eq!(charts.accepts_per_second, vec![2.0]);
        assert_eq!(charts.accept_p95_ms, vec![Some(2.0)], "3 of 4 within 2 ms, the 4th past the last bound");
        let all = Charts::from_samples(&[Sample::parse("", 0), second.clone(), second], None);
        let delivered = all.deliveries.iter().find(|series| series.result == "delivered").expect("delivered");
        assert_eq!(delivered.per_second, vec![7.0, 0.0], "both apps, then nothing new");
        assert_eq!(all.accept_p95_ms[1], None, "no accepts in the second interval");
    }
}
