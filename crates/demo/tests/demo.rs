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
    let section = |name: &str| -> Vec<&str> {
        let start = stdout.find(name).unwrap_or_else(|| panic!("no section {name}: {stdout}"));
        stdout[start..]
            .lines()
            .skip(1)
            .take_while(|line| line.starts_with("  "))
            .filter(|line| line.starts_with("  title"))
            .collect()
    };
    let iphone = section("user001 iphone-1 (APNs");
    let pixel = section("user002 pixel-1 (FCM)");
    let browser = section("user003 chrome-1 (Web Push");
    let phone = section("user003 pixel-3 (FCM)");
    assert_eq!((iphone.len(), pixel.len(), browser.len(), phone.len()), (4, 3, 2, 3), "{stdout}");
    // user003 read the room in the browser: the phone's last push clears it.
    assert!(phone[2].contains(r#"title ""  body ""  badge 0"#), "{stdout}");
    assert!(stdout.contains(r#""data":{"badge":"0","room":"demo-room","type":"clear"}"#), "{stdout}");
    let chat = r#"title "Demo Room"  body "SSS: lala"  badge 1"#;
    for (device, lines) in [("pixel", &pixel), ("browser", &browser)] {
        assert!(lines.iter().any(|line| line.contains(chat)), "{device}: the chat message with its badge: {stdout}");
    }
    // user001's iPhone has a pushKey: APNs carried a neutral alert, the device's key opens the message.
    assert!(iphone.iter().any(|line| line.contains(r#"title ""  body "New message"  badge 1"#)), "{stdout}");
    assert!(stdout.contains(&format!("    opened with iphone-1's key: {chat}")), "{stdout}");
    assert!(
        iphone.iter().any(|line| line.contains(r#"title "新訊息"  body "張小明:您好,請問有空嗎?"  badge 3"#)),
        "{stdout}"
    );
    assert!(
        browser.iter().any(|line| line.contains(r#"title "限時優惠"  body "您有一則新的優惠活動,立即查看!"  badge 1"#)),
        "{stdout}"
    );
}

/// `pushgate demo` runs the demo binary built beside it.
#[test]
fn pushgate_demo_runs_the_demo_binary_beside_it() {
    let pushgate = std::path::Path::new(env!("CARGO_BIN_EXE_pushgate-demo")).with_file_name("pushgate");
    if !pushgate.is_file() {
        eprintln!("{} is not built (build the workspace); this test did not run", pushgate.display());
        return;
    }
    let output = std::process::Command::new(&pushgate)
        .args(["demo", "--once", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("pushgate runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(stdout.lines().filter(|line| line.starts_with("  title")).count(), 12, "{stdout}");
}
