//! `pushgate-demo --once` runs the whole demo and prints what each device
//! received: every push reaches its device through pushgate and the local
//! stand-ins, with the badge pushgate computed.

#[test]
fn the_demo_prints_every_delivery_with_its_badge() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pushgate-demo"))
        .args(["--once", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // Each device's items: `  [the send it came from] what it shows  badge N`.
    let section = |name: &str| -> Vec<&str> {
        let start = stdout.find(name).unwrap_or_else(|| panic!("no section {name}: {stdout}"));
        stdout[start..]
            .lines()
            .skip(1)
            .take_while(|line| line.starts_with("  "))
            .filter(|line| line.starts_with("  ["))
            .collect()
    };
    let labels = |lines: &[&str]| -> Vec<String> {
        lines.iter().map(|line| line[3..line.find(']').expect("a label")].to_owned()).collect()
    };
    let iphone = section("user001 iphone-1 (APNs");
    let pixel = section("user002 pixel-1 (FCM");
    let browser = section("user003 chrome-1 (Web Push");
    let phone = section("user003 pixel-3 (FCM");
    // In the order sent, each labelled with its send.
    assert_eq!(labels(&iphone), ["push2clients #1", "push2clients #2", "push2clients #3", "v2 callback"], "{stdout}");
    assert_eq!(labels(&pixel), ["push2clients #1", "push2clients #3", "v2 callback"], "{stdout}");
    assert_eq!(labels(&browser), ["push2clients #1", "v2 callback"], "{stdout}");
    assert_eq!(labels(&phone), ["push2clients #1", "v2 callback", "read"], "{stdout}");
    // user003 read the room in the browser: the phone's last push clears it.
    assert!(phone[2].ends_with(r#"no notification, data only (type "clear")  badge 0"#), "{stdout}");
    assert!(stdout.contains(r#""data":{"badge":"0","room":"demo-room","type":"clear"}"#), "{stdout}");
    let chat = r#"[v2 callback] title "Demo Room"  body "SSS: lala""#;
    for (device, lines) in [("pixel", &pixel), ("browser", &browser)] {
        let line = lines[lines.len() - 1];
        assert!(line.starts_with(&format!("  {chat}")) && line.ends_with("badge 1"), "{device}: {stdout}");
    }
    // user001's iPhone has a pushKey: APNs carried a neutral alert, the device's key opens the message.
    assert_eq!(iphone[3], r#"  [v2 callback] body "New message"  badge 1"#, "{stdout}");
    assert!(
        stdout.contains(r#"      opened with iphone-1's key: title "Demo Room"  body "SSS: lala"  badge 1"#),
        "{stdout}"
    );
    assert_eq!(iphone[1], r#"  [push2clients #2] title "新訊息"  body "張小明:您好,請問有空嗎?"  badge 3"#, "{stdout}");
    // IMKIT's alert string is what iOS shows; FCM has no badge for push2clients (an iOS field).
    assert!(iphone[0].contains(r#"alert "您有一則新的優惠活動,立即查看!""#), "{stdout}");
    assert!(pixel[0].ends_with(r#"title "限時優惠"  body "您有一則新的優惠活動,立即查看!"  badge none"#), "{stdout}");
    // A push without a room opens the site, not a room page with no room.
    assert_eq!(
        browser[0],
        r#"  [push2clients #1] title "限時優惠"  body "您有一則新的優惠活動,立即查看!"  opens https://chat.example.com/  badge 1"#,
        "{stdout}"
    );
}

/// `pushgate demo` runs the demo binary built beside it.
#[test]
fn pushgate_demo_runs_the_demo_binary_beside_it() {
    let pushgate = std::path::Path::new(env!("CARGO_BIN_EXE_pushgate-demo")).with_file_name("pushgate");
    // The workspace's test run builds every binary; a run of this package alone does not.
    assert!(pushgate.is_file(), "{} is not built: cargo build -p pushgate first", pushgate.display());
    let output = std::process::Command::new(&pushgate)
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("pushgate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(stdout.lines().filter(|line| line.starts_with("  [")).count(), 12, "{stdout}");
}
