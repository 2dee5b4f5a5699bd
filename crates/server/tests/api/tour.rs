//! The README's tour, run as written: its start command on a fresh working
//! folder, then every command of its shell block in order (with bash and
//! curl, as a reader would), each answer checked against the one shown
//! under it. A shown answer is a pattern: `…` at its end means "and more",
//! `<NAME>` binds the text there and stands for it in later commands and
//! answers. A command shown without an answer must answer RC 0 if it
//! answers an envelope.

use regex::Regex;
use std::collections::HashMap;

const README: &str = include_str!("../../../../README.md");

/// The text of a fenced block of `language` in `section`, the `nth` of them.
fn block<'a>(section: &'a str, language: &str, nth: usize) -> &'a str {
    let fence = format!("```{language}\n");
    let start = section.match_indices(&fence).nth(nth).map(|(at, _)| at + fence.len()).expect("the block");
    let end = section[start..].find("```").expect("the block's end") + start;
    &section[start..end]
}

struct Step {
    command: String,
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
        if line.starts_with("KEY=") || line.starts_with("H=") {
            prelude.push(line.to_owned());
            continue;
        }
        if !line.starts_with("curl ") {
            continue;
        }
        let mut command = line.to_owned();
        while command.matches('\'').count() % 2 == 1 || command.ends_with('\\') {
            command.push('\n');
            command.push_str(lines.next().expect("the command goes on"));
        }
        let shown = lines.peek().and_then(|next| next.strip_prefix("# {")).map(|answer| format!("{{{answer}"));
        steps.push(Step { command, shown });
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
    let mut expression = String::from("^");
    let mut rest = 0;
    let mut capturing = std::collections::HashSet::new();
    for found in placeholder.captures_iter(shown) {
        let whole = found.get(0).expect("a match");
        expression.push_str(&regex::escape(&shown[rest..whole.start()]));
        let name = &found[1];
        match bound.get(name) {
            Some(value) => expression.push_str(&regex::escape(value)),
            None if capturing.insert(name.to_owned()) => expression.push_str(&format!("(?P<{name}>[^\"]+)")),
            None => expression.push_str("(?:[^\"]+)"),
        }
        rest = whole.end();
    }
    expression.push_str(&regex::escape(&shown[rest..]));
    if !open {
        expression.push('$');
    }
    Regex::new(&expression).expect("the pattern compiles")
}

#[tokio::test]
async fn the_readme_tour_runs_as_written_on_a_fresh_start() {
    let section = &README[README.find("## A five-minute tour").expect("the tour")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];

    // The start command: its environment, then `cargo run -p pushgate -- serve`.
    let start = block(section, "console", 0).lines().next().and_then(|line| line.strip_prefix("$ ")).expect("$ …");
    let (environment, command): (Vec<&str>, Vec<&str>) = start.split_whitespace().partition(|word| word.contains('='));
    assert_eq!(command.join(" "), "cargo run -p pushgate -- serve");
    let folder = tempfile::tempdir().expect("a fresh folder");
    let mut server = crate::helpers::binary::pushgate(folder.path());
    server.args(["serve", "--listen", "127.0.0.1:0"]).env("RUST_LOG", "warn");
    for assignment in environment {
        let (name, value) = assignment.split_once('=').expect("NAME=value");
        server.env(name, value);
    }
    let served = crate::helpers::binary::launch(server).await;
    let key = served.printed.iter().find_map(|line| line.trim().strip_prefix("pgk_")).map(|key| format!("pgk_{key}"));
    let address = served.base_url.strip_prefix("http://").map(str::to_owned);
    let _server = served.child;
    let (key, address) = (key.expect("a generated key was printed"), address.expect("listening"));

    let (prelude, steps) = steps(block(section, "sh", 0));
    assert!(steps.len() >= 20, "the tour's commands were found: {}", steps.len());
    let prelude: Vec<String> =
        prelude.iter().map(|line| if line.starts_with("KEY=") { format!("KEY={key}") } else { line.clone() }).collect();
    let mut bound: HashMap<String, String> = HashMap::new();
    for step in steps {
        let mut command = step.command.replace("localhost:8080", &address);
        for (name, value) in &bound {
            command = command.replace(&format!("<{name}>"), value);
        }
        let output = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{}\n{command}", prelude.join("\n")))
            .output()
            .await
            .expect("bash runs");
        let answer = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{command}\n{answer}{}", String::from_utf8_lossy(&output.stderr));
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
    assert_eq!(bound.len(), 2, "both placeholders were bound: {bound:?}");
}
