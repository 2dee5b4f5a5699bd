//! The README's tour, run as written: its start command (the demo with
//! nothing registered), then every command of its shell block in order
//! (with bash, curl and the `pushgate` binary on the PATH, as a reader
//! would), each answer checked against the one shown under it. A shown
//! answer is a pattern: `…` means "text left out" (at the end: "and
//! more"), `<NAME>` binds the text there and stands for it in later
//! commands and answers. A command shown without an answer must answer RC 0
//! if it answers an envelope. Then the command line's `--config` verbs, in
//! a folder with a `pushgate.toml`.

use regex::Regex;
use std::collections::HashMap;

const README: &str = include_str!("../../../README.md");

/// The text of a fenced block of `language` in `section`, the `nth` of them.
fn block<'a>(section: &'a str, language: &str, nth: usize) -> &'a str {
    let fence = format!("```{language}\n");
    let start = section.match_indices(&fence).nth(nth).map(|(at, _)| at + fence.len()).expect("the block");
    let end = section[start..].find("```").expect("the block's end") + start;
    &section[start..end]
}

struct Step {
    command: String,
    /// A `pushgate` command: its answer shown is its first line.
    cli: bool,
    shown: Option<String>,
}

/// The shell block's commands (a command runs on while a quote is open or a
/// line ends with `\`), each with the answer shown on the comment line
/// right under it, if any.
fn steps(shell: &str) -> (Vec<String>, Vec<Step>) {
    let mut prelude = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = shell.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("KEY=") || line.starts_with("H=") || line.starts_with("export ") {
            prelude.push(line.to_owned());
            continue;
        }
        let cli = line.starts_with("pushgate ");
        if !line.starts_with("curl ") && !cli {
            continue;
        }
        let mut command = line.to_owned();
        while command.matches('\'').count() % 2 == 1 || command.ends_with('\\') {
            command.push('\n');
            command.push_str(lines.next().expect("the command goes on"));
        }
        // A curl's answer is an envelope; the command line's is its first line of text.
        let shown = match lines.peek() {
            Some(next) if cli => next.strip_prefix("# ").map(str::to_owned),
            Some(next) => next.strip_prefix("# {").map(|answer| format!("{{{answer}")),
            None => None,
        };
        steps.push(Step { command, cli, shown });
    }
    (prelude, steps)
}

/// The shown answer as an anchored regular expression; `<NAME>`s already
/// bound are their values, new ones capture.
fn pattern(shown: &str, bound: &HashMap<String, String>) -> Regex {
    let (shown, open) = match shown.strip_suffix('…') {
        Some(start) => (start, true),
        None => (shown, false),
    };
    let placeholder = Regex::new("<([A-Z_]+)>").expect("a regex");
    let literal = |text: &str| text.split('…').map(regex::escape).collect::<Vec<_>>().join(".*?");
    let mut expression = String::from("^");
    let mut rest = 0;
    let mut capturing = std::collections::HashSet::new();
    for found in placeholder.captures_iter(shown) {
        let whole = found.get(0).expect("a match");
        expression.push_str(&literal(&shown[rest..whole.start()]));
        let name = &found[1];
        match bound.get(name) {
            Some(value) => expression.push_str(&regex::escape(value)),
            None if capturing.insert(name.to_owned()) => expression.push_str(&format!("(?P<{name}>[^\"]+)")),
            None => expression.push_str("(?:[0-9a-f-]+)"),
        }
        rest = whole.end();
    }
    expression.push_str(&literal(&shown[rest..]));
    if !open {
        expression.push('$');
    }
    Regex::new(&expression).expect("the pattern compiles")
}

/// The demo's binary, and the `pushgate` binary the workspace's build put beside it.
const DEMO: &str = env!("CARGO_BIN_EXE_pushgate-demo");

/// Runs `script` with bash in `folder`, the `pushgate` binary on the PATH.
async fn bash(folder: &std::path::Path, script: &str) -> std::process::Output {
    let binaries = std::path::Path::new(DEMO).parent().expect("the binaries' folder");
    assert!(binaries.join("pushgate").is_file(), "the pushgate binary is not built: cargo build -p pushgate first");
    let path = format!("{}:{}", binaries.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = tokio::process::Command::new("bash");
    command.arg("-c").arg(script).current_dir(folder).env("PATH", path);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("PUSHGATE_")) {
        command.env_remove(name);
    }
    command.output().await.expect("bash runs")
}

#[tokio::test]
async fn the_readme_tour_runs_as_written_against_the_demo() {
    let section = &README[README.find("## A five-minute tour").expect("the tour")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];

    // The start command, then what the demo prints (the key the tour uses among it).
    let shown_start = block(section, "console", 0);
    let start = shown_start.lines().next().and_then(|line| line.strip_prefix("$ ")).expect("$ …");
    assert_eq!(start, "cargo run -p pushgate-demo -- --empty");
    let folder = tempfile::tempdir().expect("a fresh folder");
    let mut demo = tokio::process::Command::new(DEMO);
    demo.args(["--empty", "--listen", "127.0.0.1:0"]).current_dir(folder.path()).kill_on_drop(true);
    let mut demo = demo.stdout(std::process::Stdio::piped()).spawn().expect("the demo starts");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(demo.stdout.take().expect("piped")));
    let mut printed = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("readable") {
            let last = line.starts_with("No device registered");
            printed.push(line);
            if last {
                return;
            }
        }
        panic!("the demo stopped: {printed:?}");
    })
    .await
    .expect("the demo starts within a minute");
    let address = printed[0].split("pushgate on http://").nth(1).and_then(|rest| rest.split(',').next());
    let address = address.expect("the demo says where it listens").to_owned();
    // What it printed is what the README shows, but for the port.
    let shown: Vec<String> = shown_start.lines().skip(1).filter(|line| !line.is_empty()).map(str::to_owned).collect();
    let printed: Vec<String> =
        printed.iter().filter(|line| !line.is_empty()).map(|line| line.replace(&address, "127.0.0.1:8080")).collect();
    assert_eq!(printed, shown);

    let (prelude, steps) = steps(block(section, "sh", 0));
    assert!(steps.len() >= 30, "the tour's commands were found: {}", steps.len());
    let prelude: Vec<String> = prelude.iter().map(|line| line.replace("# the demo's API key", "")).collect();
    let prelude = format!("{}\nexport PUSHGATE_URL=http://{address}", prelude.join("\n"));
    let mut bound: HashMap<String, String> = HashMap::new();
    for step in steps {
        let mut command = step.command.replace("localhost:8080", &address);
        for (name, value) in &bound {
            command = command.replace(&format!("<{name}>"), value);
        }
        let output = bash(folder.path(), &format!("{prelude}\n{command}")).await;
        let mut answer = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{command}\n{answer}{}", String::from_utf8_lossy(&output.stderr));
        if step.cli {
            answer = answer.lines().next().unwrap_or_default().to_owned();
        }
        match &step.shown {
            Some(shown) => {
                let expected = pattern(shown, &bound);
                let captures =
                    expected.captures(&answer).unwrap_or_else(|| panic!("{command}\nanswered {answer}\nshown {shown}"));
                for name in expected.capture_names().flatten() {
                    bound.insert(name.to_owned(), captures[name].to_owned());
                }
            }
            None if answer.starts_with("{\"RC\":") => assert!(answer.starts_with("{\"RC\":0,"), "{command}\n{answer}"),
            None => assert!(!answer.is_empty(), "{command} answered nothing"),
        }
    }
    let mut names: Vec<&str> = bound.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["CHAT_ID", "CLI_ID", "COPY_ID", "PUSH_ID", "ROUTED_ID"]);
}

/// The command line's `--config` verbs, as written, in a folder with a
/// `pushgate.toml` (one app, the embedded store beside it).
#[tokio::test]
async fn the_readme_command_lines_configuration_verbs_run_as_written() {
    let section = &README[README.find("## The command line").expect("the section")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let folder = tempfile::tempdir().expect("a fresh folder");
    std::fs::write(folder.path().join("pushgate.toml"), "[[apps]]\nid = \"SampleApp\"\n").expect("written");
    let mut key_id: Option<String> = None;
    let mut ran = 0;
    for line in block(section, "sh", 0).lines().filter(|line| line.starts_with("pushgate ")) {
        let command = match &key_id {
            Some(id) => line.replace("<KEY_ID>", id),
            None => line.to_owned(),
        };
        let output = bash(folder.path(), &command).await;
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{command}\n{printed}{}", String::from_utf8_lossy(&output.stderr));
        if command.contains("keys create") {
            // Its id is on standard error ("Created API key <id> for app …"), the key alone on standard output.
            let said = String::from_utf8_lossy(&output.stderr).into_owned();
            key_id = said.split("Created API key ").nth(1).and_then(|rest| rest.split(' ').next()).map(str::to_owned);
            assert!(printed.trim().starts_with("pgk_"), "{printed}");
        }
        ran += 1;
    }
    assert_eq!(ran, 5, "every verb of the block ran");
    assert!(folder.path().join("subs.jsonl").is_file(), "the export wrote its file");
}
