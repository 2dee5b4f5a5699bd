//! The environment overlay (`PUSHGATE_<SECTION>__<KEY>`), written here
//! rather than taken from the `config` or `figment` crates because `[[apps]]`
//! is an array of tables, which those crates cannot address one element of
//! from the environment; here `PUSHGATE_APPS__<app id or index>__<KEY>` can.
//! And the removal of a key that failed to read, so the rest is read.

use super::*;

/// Applies `PUSHGATE_<SECTION>__<KEY>` variables to the parsed file.
///
/// Path segments are lower-cased. Under `APPS` the next segment is an app id
/// (matched without regard to case) or an index. A value that reads as a
/// TOML array, inline table, boolean or number is taken as one; anything else
/// is a string (quote it, `'"true"'`, to force a string). Answers, for each
/// key a variable set, its path as a reading error names it (`server.listn`,
/// `apps[0].fcm.rate_per_second`) and the variable, so an error names what
/// the user typed.
pub(super) fn apply_environment(
    table: &mut toml::Table,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<std::collections::HashMap<String, String>, ConfigError> {
    let mut problems = Vec::new();
    let mut set_by = std::collections::HashMap::new();
    let mut variables: Vec<_> = environment
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name[ENV_PREFIX.len()..].contains("__"))
        .collect();
    // Apply in a fixed order so the outcome does not depend on the environment's order.
    variables.sort();
    for (name, raw) in variables {
        let segments: Vec<&str> = name[ENV_PREFIX.len()..].split("__").collect();
        match apply_one(table, &segments, parse_env_value(&raw)) {
            Ok(path) => {
                set_by.insert(path, name);
            }
            Err(problem) => problems.push(format!("{name}: {problem}")),
        }
    }
    if problems.is_empty() { Ok(set_by) } else { Err(ConfigError(problems)) }
}

/// Sets one variable's key; answers its path.
fn apply_one(table: &mut toml::Table, segments: &[&str], value: toml::Value) -> Result<String, String> {
    let Some((first, rest)) = segments.split_first() else {
        return Err("empty name".into());
    };
    if first.is_empty() || rest.iter().any(|segment| segment.is_empty()) {
        return Err("empty segment in the name".into());
    }
    let section = first.to_ascii_lowercase();
    if section == "apps" {
        let Some((selector, keys)) = rest.split_first().filter(|(_, keys)| !keys.is_empty()) else {
            return Err("expected PUSHGATE_APPS__<app id or index>__<KEY>".into());
        };
        let Some(toml::Value::Array(apps)) = table.get_mut("apps") else {
            return Err("apps is not an array of tables".into());
        };
        let position = selector.parse::<usize>().ok().filter(|index| *index < apps.len()).or_else(|| {
            apps.iter().position(|app| {
                app.get("id").and_then(toml::Value::as_str).is_some_and(|id| id.eq_ignore_ascii_case(selector))
            })
        });
        let Some((index, toml::Value::Table(app))) = position.and_then(|index| Some((index, apps.get_mut(index)?)))
        else {
            return Err(format!("no app with id or index {selector:?}"));
        };
        set_path(app, keys, value)?;
        return Ok(format!("apps[{index}].{}", dotted(keys)));
    }
    set_path(table, segments, value)?;
    Ok(dotted(segments))
}

/// `a.b.c` of the segments, lower-cased as the keys are.
fn dotted(segments: &[&str]) -> String {
    segments.iter().map(|segment| segment.to_ascii_lowercase()).collect::<Vec<_>>().join(".")
}

fn set_path(table: &mut toml::Table, segments: &[&str], value: toml::Value) -> Result<(), String> {
    let (last, parents) = segments.split_last().ok_or("empty name")?;
    let mut current = table;
    for segment in parents {
        let entry =
            current.entry(segment.to_ascii_lowercase()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| format!("{segment} is not a table"))?;
    }
    current.insert(last.to_ascii_lowercase(), value);
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    let looks_typed = trimmed.starts_with(['[', '{', '"'])
        || trimmed == "true"
        || trimmed == "false"
        || trimmed.parse::<i64>().is_ok()
        || trimmed.parse::<f64>().is_ok();
    if looks_typed
        && let Ok(mut parsed) = format!("value = {trimmed}").parse::<toml::Table>()
        && let Some(value) = parsed.remove("value")
    {
        return value;
    }
    toml::Value::String(raw.to_owned())
}

/// Removes the key at `path` (`apps[1].apns.key_id`, as serde_path_to_error
/// names it) from `table`; `false` when there is none to remove.
pub(super) fn remove_key(table: &mut toml::Table, path: &str) -> bool {
    let mut parts: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|part| match part.split_once('[') {
            Some((name, index)) => (name, index.trim_end_matches(']').parse().ok()),
            None => (part, None),
        })
        .collect();
    let Some((last, last_index)) = parts.pop() else { return false };
    let mut current = table;
    for (name, index) in parts {
        let value = match current.get_mut(name) {
            Some(value) => value,
            None => return false,
        };
        let value = match (value, index) {
            (toml::Value::Array(items), Some(index)) => match items.get_mut(index) {
                Some(item) => item,
                None => return false,
            },
            (value, None) => value,
            _ => return false,
        };
        match value {
            toml::Value::Table(next) => current = next,
            _ => return false,
        }
    }
    match last_index {
        None => current.remove(last).is_some(),
        Some(index) => match current.get_mut(last) {
            Some(toml::Value::Array(items)) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
    }
}
