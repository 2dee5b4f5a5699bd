//! A/B copy experiments: variants of a chat push's title and body, given to
//! clients by a stable hash, and the statistics that compare them.

use crate::{ClientId, ParseError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 3] = ["sender", "message", "roomName"];
/// Longest variant name and experiment id, bytes.
const MAX_NAME_BYTES: usize = 64;
/// Longest template, bytes.
const MAX_TEMPLATE_BYTES: usize = 1024;
/// Most variants in one experiment.
const MAX_VARIANTS: usize = 16;

/// An experiment as `PUT /v1/experiments/{id}` takes it and `GET` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    /// The variants; the first is the control the others are compared with.
    pub variants: Vec<Variant>,
    /// Only messages of these types take part; every type when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_types: Option<Vec<String>>,
    /// Active from (Unix ms); at once when absent.
    #[serde(rename = "startMS", default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// Active until (Unix ms, excluded); with no end when absent.
    #[serde(rename = "endMS", default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
}

/// One variant: its share and its copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Unique within the experiment.
    pub name: String,
    /// Relative share of clients (any non-negative number).
    pub weight: f64,
    /// Title template; the usual title when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Body template; the usual body when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl Experiment {
    /// Checks what the JSON shape cannot, naming the field at fault.
    pub fn validate(&self) -> Result<(), ParseError> {
        if self.variants.is_empty() || self.variants.len() > MAX_VARIANTS {
            return Err(ParseError::new(format!("variants: from 1 to {MAX_VARIANTS} variants are required")));
        }
        for (index, variant) in self.variants.iter().enumerate() {
            let at = format!("variants[{index}]");
            if variant.name.is_empty() || variant.name.len() > MAX_NAME_BYTES {
                return Err(ParseError::new(format!("{at}.name must be 1 to {MAX_NAME_BYTES} bytes")));
            }
            if self.variants[..index].iter().any(|earlier| earlier.name == variant.name) {
                return Err(ParseError::new(format!("{at}.name: {:?} is used twice", variant.name)));
            }
            if !variant.weight.is_finite() || variant.weight < 0.0 {
                return Err(ParseError::new(format!("{at}.weight must be a number, 0 or more")));
            }
            for (field, template) in [("title", &variant.title), ("body", &variant.body)] {
                if let Some(template) = template {
                    check_template(template).map_err(|why| ParseError::new(format!("{at}.{field}: {why}")))?;
                }
            }
        }
        if self.variants.iter().map(|variant| variant.weight).sum::<f64>() <= 0.0 {
            return Err(ParseError::new("variants: the weights must sum to a positive number"));
        }
        if let (Some(start), Some(end)) = (self.start_ms, self.end_ms)
            && start >= end
        {
            return Err(ParseError::new("endMS must be after startMS"));
        }
        Ok(())
    }

    /// Whether a message of this type at `now_ms` takes part.
    pub fn applies(&self, message_type: &str, now_ms: i64) -> bool {
        self.start_ms.is_none_or(|start| start <= now_ms)
            && self.end_ms.is_none_or(|end| now_ms < end)
            && self.message_types.as_ref().is_none_or(|types| types.iter().any(|t| t == message_type))
    }

    /// The variant a client always gets in experiment `id`: a SHA-256 of
    /// (id, client) placed on the variants' cumulative weights.
    pub fn assign(&self, id: &str, client: &ClientId) -> &Variant {
        let digest = Sha256::new().chain_update(id).chain_update([0]).chain_update(client.as_str()).finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        // 53 bits: exactly representable, uniform in [0, 1).
        let unit = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
        let total: f64 = self.variants.iter().map(|variant| variant.weight).sum();
        let mut point = unit * total;
        for variant in &self.variants {
            if point < variant.weight {
                return variant;
            }
            point -= variant.weight;
        }
        // Rounding at the very top: the last variant with weight.
        self.variants.iter().rev().find(|variant| variant.weight > 0.0).unwrap_or(&self.variants[0])
    }
}

/// Checks that `{...}` in a template names a known placeholder and braces balance.
fn check_template(template: &str) -> Result<(), String> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(format!("must be at most {MAX_TEMPLATE_BYTES} bytes"));
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("'}' without '{'".into());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("'{' without '}'")?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!("unknown placeholder {{{name}}}; use {{sender}}, {{message}} or {{roomName}}"));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Fills `{sender}`, `{message}` and `{roomName}` in a checked template, in one pass.
pub fn fill_template(template: &str, sender: &str, message: &str, room_name: &str) -> String {
    let mut out = String::with_capacity(template.len() + sender.len() + message.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        match &after[..close] {
            "sender" => out.push_str(sender),
            "message" => out.push_str(message),
            "roomName" => out.push_str(room_name),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Two-sided p-value of the two-proportion z-test: do `hits_a / n_a` and
/// `hits_b / n_b` differ? `None` when either sample is empty or the pooled
/// proportion is 0 or 1 (no variance to test).
pub fn two_proportion_p_value(hits_a: u64, n_a: u64, hits_b: u64, n_b: u64) -> Option<f64> {
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (n_a, n_b) = (n_a as f64, n_b as f64);
    let pooled = (hits_a as f64 + hits_b as f64) / (n_a + n_b);
    let variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b);
    if variance <= 0.0 {
        return None;
    }
    let z = (hits_a as f64 / n_a - hits_b as f64 / n_b).abs() / variance.sqrt();
    Some(erfc(z / std::f64::consts::SQRT_2).clamp(0.0, 1.0))
}

/// The complementary error function, to about 1e-7 (Numerical Recipes' `erfcc`, Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let polynomial = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * polynomial.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn experiment(value: serde_json::Value) -> Experiment {
        serde_json::from_value(value).expect("parses")
    }

    fn half_half() -> Experiment {
        experiment(json!({ "variants": [
            { "name": "control", "weight": 1 },
            { "name": "short", "weight": 1, "title": "{roomName}", "body": "{sender} says {message}" }
        ] }))
    }

    #[test]
    fn ten_thousand_clients_split_evenly_and_keep_their_variant() {
        let experiment = half_half();
        let clients: Vec<ClientId> =
            (0..10_000).map(|n| ClientId::parse(&format!("client-{n}")).expect("id")).collect();
        let short = clients.iter().filter(|client| experiment.assign("exp-1", client).name == "short").count();
        // 50/50 over 10,000: the standard deviation is 50, so ±250 is five of them.
        assert!((4_750..=5_250).contains(&short), "{short} of 10000 in the second variant");
        for client in &clients[..500] {
            assert_eq!(experiment.assign("exp-1", client).name, experiment.assign("exp-1", client).name);
        }
        let other = clients.iter().filter(|client| experiment.assign("exp-2", client).name == "short").count();
        assert_ne!(short, other, "another experiment splits the clients differently");
    }

    #[test]
    fn weights_set_the_shares_and_zero_weight_gets_no_one() {
        let experiment = experiment(json!({ "variants": [
            { "name": "a", "weight": 3 }, { "name": "off", "weight": 0 }, { "name": "b", "weight": 1 }
        ] }));
        let names: Vec<&str> = (0..4_000)
            .map(|n| experiment.assign("weighted", &ClientId::parse(&format!("c{n}")).expect("id")).name.as_str())
            .collect();
        let a = names.iter().filter(|name| **name == "a").count();
        assert!((2_850..=3_150).contains(&a), "{a} of 4000 in a (expected 3000)");
        assert!(!names.contains(&"off"));
    }

    #[test]
    fn bad_experiments_name_the_field() {
        let refused = |value: serde_json::Value| experiment(value).validate().expect_err("refused").0;
        assert_eq!(
            refused(json!({ "variants": [{ "name": "a", "weight": 1, "body": "{sender}: {text}" }] })),
            "variants[0].body: unknown placeholder {text}; use {sender}, {message} or {roomName}"
        );
        assert_eq!(
            refused(json!({ "variants": [{ "name": "a", "weight": 0 }, { "name": "b", "weight": 0 }] })),
            "variants: the weights must sum to a positive number"
        );
        assert_eq!(
            refused(json!({ "variants": [{ "name": "a", "weight": -1 }] })),
            "variants[0].weight must be a number, 0 or more"
        );
        assert_eq!(
            refused(json!({ "variants": [{ "name": "a", "weight": 1 }, { "name": "a", "weight": 1 }] })),
            "variants[1].name: \"a\" is used twice"
        );
        assert_eq!(
            refused(json!({ "variants": [{ "name": "a", "weight": 1, "title": "{sender" }] })),
            "variants[0].title: '{' without '}'"
        );
        assert_eq!(refused(json!({ "variants": [] })), "variants: from 1 to 16 variants are required");
        assert_eq!(
            refused(json!({ "variants": [{ "name": "a", "weight": 1 }], "startMS": 5, "endMS": 5 })),
            "endMS must be after startMS"
        );
        assert!(half_half().validate().is_ok());
    }

    #[test]
    fn templates_fill_once_and_experiments_apply_by_type_and_time() {
        assert_eq!(
            fill_template("{sender} says {message} in {roomName}", "{message}", "hi", "R"),
            "{message} says hi in R"
        );
        let filtered = experiment(json!({
            "variants": [{ "name": "a", "weight": 1 }], "messageTypes": ["text"], "startMS": 100, "endMS": 200
        }));
        assert!(filtered.applies("text", 100) && filtered.applies("text", 199));
        assert!(!filtered.applies("text", 200) && !filtered.applies("text", 99) && !filtered.applies("image", 150));
    }

    #[test]
    fn the_two_proportion_test_matches_known_values() {
        // 50/1000 vs 80/1000: z = 2.7211, two-sided p = 0.0065066 (math.erfc(z / sqrt 2)).
        let p = two_proportion_p_value(50, 1000, 80, 1000).expect("testable");
        assert!((p - 0.006_506_6).abs() < 1e-6, "{p}");
        // 100/1000 vs 130/1000: z = 2.1027, p = 0.0354885.
        let p = two_proportion_p_value(100, 1000, 130, 1000).expect("testable");
        assert!((p - 0.035_488_5).abs() < 1e-6, "{p}");
        let same = two_proportion_p_value(100, 1000, 100, 1000).expect("testable");
        assert!((same - 1.0).abs() < 1e-6, "{same}");
        assert_eq!(two_proportion_p_value(0, 10, 0, 10), None);
        assert_eq!(two_proportion_p_value(1, 0, 1, 10), None);
    }
}
