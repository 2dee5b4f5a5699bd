//! The command line's client verbs: they talk to a running pushgate over its
//! HTTP API with an app's key (`--url`, `--key`, or `PUSHGATE_URL`,
//! `PUSHGATE_KEY`), print human tables (or the answer's JSON with `--json`),
//! and exit with a code scripts can rely on ([`CliError::exit_code`]).

use serde_json::{Value, json};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Registrations sent at once by `devices import`.
const IMPORT_CONCURRENCY: usize = 16;

/// Why a verb failed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The request could not be made as asked (exit 2).
    #[error("{0}")]
    Usage(String),
    /// pushgate answered with an error (exit 1).
    #[error("pushgate answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The envelope's error code and message.
        message: String,
    },
    /// Some input lines were refused (exit 1); the summary was printed.
    #[error("{0} line(s) refused")]
    Partial(usize),
    /// pushgate could not be reached (exit 3).
    #[error("cannot reach pushgate at {url}: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl CliError {
    /// 1 refused (wholly or in part), 2 bad usage, 3 pushgate unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Refused { .. } | Self::Partial(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable { .. } => 3,
        }
    }
}

/// A running pushgate, reached with one app's key.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl ApiClient {
    /// A client of the instance at `url` (its base, such as `http://127.0.0.1:8080`).
    pub fn new(url: &str, key: Option<String>) -> Result<Self, CliError> {
        let key = key.filter(|key| !key.is_empty()).ok_or_else(|| {
            CliError::Usage("an API key is needed: --key or PUSHGATE_KEY (the IM-API-KEY of the app)".into())
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .map_err(|error| CliError::Usage(format!("cannot make an HTTP client: {error}")))?;
        Ok(Self { http, url: url.trim_end_matches('/').to_owned(), key })
    }

    /// Calls `path`; answers the envelope's `result`.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let mut request = self.http.request(method, format!("{}{path}", self.url)).header("IM-API-KEY", &self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable =
            |error: reqwest::Error| CliError::Unreachable { url: self.url.clone(), reason: error.to_string() };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.map_err(unreachable)?;
        if status == 200 && answer["RC"] == 0 {
            return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
        }
        let message = format!(
            "{} {}",
            answer["error"]["code"].as_str().unwrap_or("ERROR"),
            answer["error"]["message"].as_str().unwrap_or_default()
        );
        Err(CliError::Refused { status, message })
    }

    /// `POST /push/push2clients`.
    pub async fn send(&self, clients: &[String], payload: &Value) -> Result<Value, CliError> {
        self.call(reqwest::Method::POST, "/push/push2clients", Some(&json!({ "clients": clients, "payload": payload })))
            .await
    }

    /// `GET /v1/pushes/{pushId}`, with `waitSeconds` when asked to wait.
    pub async fn push(&self, push_id: &str, wait_seconds: Option<u64>) -> Result<Value, CliError> {
        let wait = wait_seconds.map(|seconds| format!("?waitSeconds={seconds}")).unwrap_or_default();
        self.call(reqwest::Method::GET, &format!("/v1/pushes/{}{wait}", segment(push_id)), None).await
    }

    /// `GET /v1/clients/{clientId}/devices`.
    pub async fn devices(&self, client_id: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, &format!("/v1/clients/{}/devices", segment(client_id)), None).await
    }

    /// `GET /v1/clients/{clientId}/badge`.
    pub async fn badge(&self, client_id: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, &format!("/v1/clients/{}/badge", segment(client_id)), None).await
    }

    /// `/v1/apps/{appId}/channels[/{channelId}[/broadcast]]`, in `environment` if given.
    pub async fn channels(
        &self,
        method: reqwest::Method,
        app: &str,
        channel_id: Option<&str>,
        broadcast: bool,
        environment: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut path = format!("/v1/apps/{}/channels", segment(app));
        if let Some(channel_id) = channel_id {
            path.push('/');
            path.push_str(&segment(channel_id));
        }
        if broadcast {
            path.push_str("/broadcast");
        }
        if let Some(environment) = environment {
            path.push_str(&format!("?environment={}", segment(environment)));
        }
        self.call(method, &path, body).await
    }

    /// Registers every line of `file` (one `/me/subscribe` body per line,
    /// JSON) with a few requests at a time, as it reads them. Idempotent:
    /// a registration is an upsert. Shows progress (rate, ETA) on a terminal;
    /// answers the summary with each refused line's number and reason.
    pub async fn import_devices(&self, file: &std::path::Path) -> Result<ImportSummary, CliError> {
        let open = || {
            std::fs::File::open(file)
                .map(std::io::BufReader::new)
                .map_err(|error| CliError::Usage(format!("cannot read {}: {error}", file.display())))
        };
        let total = open()?.lines().count();
        let done = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        let unreachable = Arc::new(std::sync::Mutex::new(None));
        let progress = std::io::stderr().is_terminal().then(|| tokio::spawn(show_progress(Arc::clone(&done), total)));
        let slots = Arc::new(tokio::sync::Semaphore::new(IMPORT_CONCURRENCY));
        let mut sends = tokio::task::JoinSet::new();
        let mut blank = 0;
        for (index, line) in open()?.lines().enumerate() {
            let number = index + 1;
            let line = line.map_err(|error| CliError::Usage(format!("{}: line {number}: {error}", file.display())))?;
            if line.trim().is_empty() {
                blank += 1;
                done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let permit =
                Arc::clone(&slots).acquire_owned().await.map_err(|error| CliError::Usage(error.to_string()))?;
            let (client, done, refused, unreachable) =
                (self.clone(), Arc::clone(&done), Arc::clone(&refused), Arc::clone(&unreachable));
            sends.spawn(async move {
                let outcome = match serde_json::from_str::<Value>(&line) {
                    Err(error) => Err(format!("not JSON: {error}")),
                    Ok(body) => match client.call(reqwest::Method::POST, "/me/subscribe", Some(&body)).await {
                        Ok(_) => Ok(()),
                        Err(CliError::Refused { message, .. }) => Err(message),
                        Err(error) => {
                            *unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
                            Err("not sent: pushgate could not be reached".to_owned())
                        }
                    },
                };
                if let Err(reason) = outcome {
                    refused
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(RefusedLine { line: number, reason });
                }
                done.fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        while sends.join_next().await.is_some() {}
        if let Some(progress) = progress {
            progress.abort();
            eprintln!();
        }
        if let Some(error) = unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            return Err(error);
        }
        let mut refused = std::mem::take(&mut *refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        refused.sort_by_key(|refused| refused.line);
        let lines = done.load(Ordering::Relaxed);
        Ok(ImportSummary { lines, imported: lines - blank - refused.len(), refused })
    }
}

/// A path segment, percent-encoded.
fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}

async fn show_progress(done: Arc<AtomicUsize>, total: usize) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = done.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let rate = done as f64 / elapsed.max(0.001);
        let eta = if rate > 0.0 { (total.saturating_sub(done)) as f64 / rate } else { 0.0 };
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
        eprint!(
            "\r[{}{}] {done}/{total} lines, {rate:.0}/s, ETA {eta:.0} s ",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
        let _ = std::io::stderr().flush();
    }
}

/// What `devices import` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportSummary {
    /// Lines read.
    pub lines: usize,
    /// Devices registered (or registered again, unchanged).
    pub imported: usize,
    /// The lines pushgate (or the JSON parser) refused.
    pub refused: Vec<RefusedLine>,
}

/// One refused line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefusedLine {
    /// Its number, from 1.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// A plain text table: a header row, then the rows, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON value as a table cell: strings bare, null empty.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_each_column_to_its_widest_cell() {
        let rows = vec![vec!["alice".to_owned(), "delivered".to_owned()], vec!["b".to_owned(), "retrying".to_owned()]];
        assert_eq!(table(&["client", "status"], &rows), "client  status\nalice   delivered\nb       retrying");
    }

    #[test]
    fn ids_are_percent_encoded_into_paths() {
        assert_eq!(segment("user 1/ä"), "user%201%2F%C3%A4");
    }
}
