//! pushgate under test: one child process per node, and the nodes of a run.

use super::*;
use crate::private::{PRIVATE_API_KEY, PRIVATE_APP};
use crate::storm::{STORM_API_KEY, STORM_APP};

/// A running pushgate child process.
pub(crate) struct Pushgate {
    child: std::process::Child,
    base_url: String,
    /// The store it runs on, for [`store_ceiling`] after it stops.
    store_url: String,
    _directory: tempfile::TempDir,
}

impl Drop for Pushgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pushgate {
    pub(crate) fn start(
        fakes: &Fakes,
        concurrency: usize,
        window_seconds: u32,
        store_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let directory = tempfile::tempdir()?;
        let store_url = store_url
            .map_or_else(|| format!("sqlite://{}", directory.path().join("pushgate.db").display()), str::to_owned);
        let write = |name: &str, content: &str| -> anyhow::Result<std::path::PathBuf> {
            let path = directory.path().join(name);
            std::fs::write(&path, content)?;
            Ok(path)
        };
        let p8 = write("key.p8", &fakes.key.private_pem)?;
        let account = write("service-account.json", &fakes.fcm.account.json)?;
        let ca = write("ca.pem", &fakes.ca.ca_pem())?;
        let tables = pushgate_testkit::fake_provider_tables(&fakes.apns, &p8, &fakes.fcm, &account, &ca);
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[log]
level = "warn"
[delivery]
concurrency = {concurrency}
batch = {batch}
[[apps]]
id = "SampleApp"
api_keys = ["{API_KEY}"]
generic_push = {{ secret = "{SECRET}" }}
limits = {{ requests_per_second = 1000000, burst = 1000000, in_flight = 1000000 }}
{tables}rate_per_second = 1000000
[[apps]]
id = "{STORM_APP}"
api_keys = ["{STORM_API_KEY}"]
generic_push = {{ secret = "{SECRET}" }}
limits = {{ requests_per_second = 1000000, burst = 1000000, in_flight = 1000000 }}
coalescing = {{ window_seconds = {window_seconds} }}
{tables}rate_per_second = 1000000
[[apps]]
id = "{PRIVATE_APP}"
api_keys = ["{PRIVATE_API_KEY}"]
generic_push = {{ secret = "{SECRET}" }}
limits = {{ requests_per_second = 1000000, burst = 1000000, in_flight = 1000000 }}
privacy = {{ mode = "encrypt" }}
{tables}rate_per_second = 1000000
"#,
            batch = concurrency * 2,
        );
        let config_path = write("pushgate.toml", &config)?;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .arg(SERVE)
            .arg(&config_path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting pushgate")?;
        let stdout = child.stdout.take().context("the child's output")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let base_url = loop {
            let line = lines.next().context("pushgate ended before listening")??;
            if let Some(url) = line.strip_prefix("listening ") {
                break url.to_owned();
            }
        };
        // Keep draining, so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child, base_url, store_url, _directory: directory })
    }

    /// Ends the process, keeping its database for [`store_ceiling`]; answers its URL.
    pub(crate) fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.store_url.clone()
    }

    /// CPU time the process has used so far (user and system, all its
    /// threads), seconds: a cost per delivery that the machine's noise moves
    /// much less than a rate.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command (in parentheses, may hold spaces) come the fields
        // from the 3rd on; utime and stime are the 14th and 15th, in USER_HZ
        // ticks (100 per second on Linux).
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let ticks = |n: usize| fields.get(n - 3).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(14) + ticks(15)) / 100.0
    }

    /// (current, peak) resident set size of the process, bytes.
    pub(crate) fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// The pushgate processes of a run, all on one store.
pub(crate) struct Nodes {
    nodes: Vec<Pushgate>,
    /// Their base URLs: request `n` goes to `bases[n % len]`.
    pub(crate) bases: Arc<[String]>,
}

impl Nodes {
    pub(crate) fn start(
        fakes: &Fakes,
        count: usize,
        concurrency: usize,
        window_seconds: u32,
        store_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(count == 1 || store_url.is_some(), "--nodes above 1 needs --store postgres://…");
        let nodes = (0..count.max(1))
            .map(|_| Pushgate::start(fakes, concurrency, window_seconds, store_url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let bases = nodes.iter().map(|node| node.base_url.clone()).collect();
        Ok(Self { nodes, bases })
    }

    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(Pushgate::cpu_seconds).sum()
    }

    /// (current, peak) RSS of the largest node.
    pub(crate) fn rss(&self) -> (u64, u64) {
        self.nodes.iter().map(Pushgate::rss).fold((0, 0), |(a, b), (c, d)| (a.max(c), b.max(d)))
    }

    /// Ends every process; answers the store's URL.
    pub(crate) fn stop(&mut self) -> String {
        self.nodes.iter_mut().map(Pushgate::stop).last().unwrap_or_default()
    }
}
