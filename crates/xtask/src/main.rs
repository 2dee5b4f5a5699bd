//! `cargo xtask test`: the README's test command. It runs the whole suite
//! with `cargo nextest run --workspace`, leaving out only the tests whose
//! outside needs this machine cannot meet (a PostgreSQL server that answers,
//! Debian's Chromium and ChromeDriver, Node.js with npm), decided before the
//! run, and names them at the end as skipped, with why and what provides
//! them: a test that did not run is never counted as passed. (A test run
//! without its need fails, so `cargo nextest run` alone never passes one.)
//! With `CI=true` a missing need is an error before anything runs.
//!
//! What a test needs is said by where it lives or what it is called (the
//! filters below); the npm packages a test needs are installed by the test
//! itself on first use.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// An outside need of some tests.
struct Need {
    /// What is needed, for a person.
    what: String,
    /// The tests that need it, as a nextest filterset.
    tests: &'static str,
    /// What provides it.
    provide: &'static str,
    /// Whether this machine has it.
    met: bool,
}

fn needs() -> Vec<Need> {
    let postgres = std::env::var("PUSHGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    vec![
        Need {
            what: format!("PostgreSQL at {postgres} (PUSHGATE_TEST_POSTGRES)"),
            // A test binary or module named `postgres`, or `_on_postgres_` in its name.
            tests: "binary(postgres) | test(/^postgres::/) | test(/_on_postgres_/)",
            provide: "start a PostgreSQL server there (trust auth on loopback, a database `test`); .ci/run installs \
                      and starts Debian's when none answers",
            met: answers(&postgres),
        },
        Need {
            what: "Debian's Chromium and ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver)".to_owned(),
            tests: "test(/in_a_real_browser/)",
            provide: "apt-get install chromium chromium-driver",
            met: std::path::Path::new("/usr/bin/chromium").exists()
                && std::path::Path::new("/usr/bin/chromedriver").exists(),
        },
        Need {
            what: "Node.js and npm (for the npm packages web-push and web-push-testing)".to_owned(),
            tests: "test(/npm_/)",
            provide: "apt-get install nodejs npm (the tests install the packages themselves)",
            met: runs("node") && runs("npm"),
        },
        Need {
            what: "Prometheus's promtool (checks and unit-tests deploy/prometheus)".to_owned(),
            tests: "test(/with_promtool/)",
            provide: "apt-get install prometheus (it has promtool)",
            met: runs("promtool"),
        },
        Need {
            what: "kubernetes-validate (checks deploy/kubernetes against the Kubernetes schemas)".to_owned(),
            tests: "test(/with_kubernetes_validate/)",
            provide: "pip install kubernetes-validate==1.37.0",
            met: runs("kubernetes-validate"),
        },
    ]
}

/// Whether something accepts a TCP connection at the URL's host and port.
fn answers(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    let addresses: Vec<SocketAddr> = host_port.to_socket_addrs().map(Iterator::collect).unwrap_or_default();
    addresses.iter().any(|address| TcpStream::connect_timeout(address, Duration::from_secs(2)).is_ok())
}

fn runs(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok_and(|output| output.status.success())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("test") => test(args.collect()),
        _ => {
            eprintln!("usage: cargo xtask test [nextest arguments]");
            ExitCode::from(2)
        }
    }
}

fn test(extra: Vec<String>) -> ExitCode {
    let needs = needs();
    let missing: Vec<&Need> = needs.iter().filter(|need| !need.met).collect();
    if std::env::var("CI").as_deref() == Ok("true") && !missing.is_empty() {
        for need in &missing {
            eprintln!("CI needs {}: {}", need.what, need.provide);
        }
        return ExitCode::FAILURE;
    }
    let left_out = missing.iter().map(|need| format!("({})", need.tests)).collect::<Vec<_>>().join(" | ");
    let mut nextest = Command::new("cargo");
    nextest.args(["nextest", "run", "--workspace"]);
    if !missing.is_empty() {
        nextest.args(["-E", &format!("not ({left_out})")]);
    }
    let status = match nextest.args(&extra).status() {
        Ok(status) => status,
        Err(error) => {
            eprintln!("cannot run cargo nextest ({error}); install it with `cargo install cargo-nextest --locked`");
            return ExitCode::FAILURE;
        }
    };
    if !missing.is_empty() {
        // nextest's own "skipped" leaves out the test binaries it did not start at all.
        eprintln!("\nSkipped, not run (and not counted as passed):");
        for need in &missing {
            let tests = list(need.tests);
            eprintln!("  {} test(s) need {}; to run them: {}", tests.len(), need.what, need.provide);
            for test in tests {
                eprintln!("    {test}");
            }
        }
    }
    if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The tests a filterset selects, as nextest names them.
fn list(filter: &str) -> Vec<String> {
    let output = Command::new("cargo")
        .args(["nextest", "list", "--workspace", "--message-format", "oneline", "-E", filter])
        .stderr(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) => String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}
