//! Configuration: built-in defaults, then a TOML file, then environment
//! variables `PUSHGATE_<SECTION>__<KEY>`; secrets may be given as files.
//! Each struct's doc comments are the reference for its keys.
//!
//! By job: `schema` (the sections and their defaults), `environment` (the
//! overlay), `files` (relative paths, secret files), `validate` (every
//! problem at once, each named by its key).

use ipnet::IpNet;
use pushgate_api::certificates::WatchedCertificate;
pub use pushgate_delivery::DeliveryConfig;
use pushgate_domain::{AppId, Environment};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The prefix of every configuration environment variable.
pub const ENV_PREFIX: &str = "PUSHGATE_";
/// The id of the app that exists when the configuration names none.
pub const DEFAULT_APP_ID: &str = "SampleApp";
/// Shortest API key accepted in the configuration: a guessable key is no key.
const MIN_API_KEY_LEN: usize = 16;

mod environment;
mod files;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

pub use schema::*;

use environment::{apply_environment, remove_key};

/// Why the configuration was refused: every problem found, each naming its key.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(problem: impl Into<String>) -> Self {
        Self(vec![problem.into()])
    }
}

impl Config {
    /// Loads the file (if any), applies the environment, reads secret files
    /// and validates the result.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| ConfigError::one(format!("cannot read config file {}: {error}", path.display())))?,
            None => String::new(),
        };
        let name = file.map_or_else(|| "the configuration".to_owned(), |path| path.display().to_string());
        Self::from_text(&text, &name, file.and_then(Path::parent), environment)
    }

    /// As [`Config::load`], from the text of a file called `name` in `folder`
    /// (relative paths in it resolve there).
    pub fn from_text(
        text: &str,
        name: &str,
        folder: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = text
            .parse::<toml::Table>()
            .map_err(|error| ConfigError::one(format!("{name} is not valid TOML: {error}")))?;
        if !table.contains_key("apps") {
            let mut sample = toml::Table::new();
            sample.insert("id".into(), DEFAULT_APP_ID.into());
            table.insert("apps".into(), toml::Value::Array(vec![toml::Value::Table(sample)]));
        }
        let set_by = apply_environment(&mut table, environment)?;
        // Every problem at once: a key the file gets wrong is reported and
        // left out, and the rest is read again, so one unknown key or bad
        // value does not hide the others (nor the checks after reading).
        let mut problems = Vec::new();
        let mut config = loop {
            let error = match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table.clone())) {
                Ok(config) => break Some(config),
                Err(error) => error,
            };
            let path = error.path().to_string();
            // The toml crate appends "in `section`" on a second line; the path already says it.
            let message = error.into_inner().to_string();
            let message = message.lines().next().unwrap_or_default().to_owned();
            let removed = problems.len() < 50 && remove_key(&mut table, &path);
            // A required key left out would only be reported again as missing.
            let missing_again = message.starts_with("missing field")
                && problems.iter().any(|problem: &String| problem.starts_with(&format!("{path}.")));
            if !missing_again {
                problems.push(match set_by.get(&path) {
                    Some(variable) => format!("{variable} ({path}): {message}"),
                    None => format!("{path}: {message}"),
                });
            }
            if !removed || missing_again {
                break None;
            }
        };
        if let Some(config) = &mut config {
            if let Some(folder) = folder {
                config.resolve_paths(folder);
            }
            for step in [Self::read_secret_files, |config: &mut Self| config.validate()] {
                if let Err(ConfigError(more)) = step(config) {
                    problems.extend(more);
                }
            }
        }
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError(problems)),
        }
    }

    /// Every certificate the configuration names (the server's TLS
    /// certificate, APNs client certificates), with when its first
    /// certificate (the leaf) expires; a file that does not parse is left out.
    pub fn certificates(&self) -> Vec<WatchedCertificate> {
        let mut files: Vec<(Option<String>, &'static str, String, &Path)> = Vec::new();
        if let Some(cert) = &self.server.tls_cert {
            files.push((None, "server_tls", "server.tls_cert".into(), cert));
        }
        for (index, app) in self.apps.iter().enumerate() {
            if let Some(cert) = app.apns.as_ref().and_then(|apns| apns.certificate_file.as_deref()) {
                files.push((Some(app.id.clone()), "apns", format!("apps[{index}].apns.certificate_file"), cert));
            }
        }
        files
            .into_iter()
            .filter_map(|(app, certificate, key, path)| {
                let pem = std::fs::read(path).ok()?;
                let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
                let parsed = pem.parse_x509().ok()?;
                let not_after_ms = parsed.validity().not_after.timestamp().saturating_mul(1000);
                Some(WatchedCertificate { app, certificate, key, not_after_ms })
            })
            .collect()
    }

    /// Every configured app with its id as a domain value (validated at load).
    pub fn app_ids(&self) -> impl Iterator<Item = (AppId, &AppConfig)> {
        self.apps.iter().filter_map(|app| AppId::parse(&app.id).ok().map(|id| (id, app)))
    }

    /// The configured app `id` names.
    pub fn app(&self, id: &str) -> anyhow::Result<(AppId, &AppConfig)> {
        self.app_ids()
            .find(|(app_id, _)| app_id.as_str() == id)
            .ok_or_else(|| anyhow::anyhow!("no app {id:?} in the configuration"))
    }
}
