//! The configuration's loading, overlay and validation.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load_text(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("pushgate.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(Some(&path), env(pairs))
}

#[test]
fn no_file_gives_the_documented_defaults() {
    let config = Config::load(None, env(&[])).expect("defaults are valid");
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().expect("addr"));
    assert_eq!(config.store.url, "sqlite://pushgate.db");
    assert_eq!(config.server.max_body_bytes, 1024 * 1024);
    assert_eq!(config.apps.len(), 1);
    assert_eq!(config.apps[0].id, "SampleApp");
    assert!(config.apps[0].api_keys.is_empty());
}

#[test]
fn environment_variables_override_sections() {
    let config = Config::load(
        None,
        env(&[("PUSHGATE_SERVER__LISTEN", "0.0.0.0:9000"), ("PUSHGATE_SERVER__MAX_BODY_BYTES", "4096")]),
    )
    .expect("valid");
    assert_eq!(config.server.listen, "0.0.0.0:9000".parse().expect("addr"));
    assert_eq!(config.server.max_body_bytes, 4096);
}

#[test]
fn an_app_is_addressed_by_id_or_index_from_the_environment() {
    let text = "[[apps]]\nid = \"One\"\n[[apps]]\nid = \"Two\"\n";
    let config = load_text(
        text,
        &[
            ("PUSHGATE_APPS__TWO__API_KEYS", r#"["key-for-app-two-000"]"#),
            ("PUSHGATE_APPS__0__API_KEYS", r#"["key-for-app-one-000"]"#),
        ],
    )
    .expect("valid");
    assert_eq!(config.apps[0].api_keys[0].expose_secret(), "key-for-app-one-000");
    assert_eq!(config.apps[1].api_keys[0].expose_secret(), "key-for-app-two-000");
}

#[test]
fn an_override_of_an_unknown_app_names_the_variable() {
    let error = Config::load(None, env(&[("PUSHGATE_APPS__NOPE__API_KEYS", "[]")])).unwrap_err();
    assert_eq!(error.0, vec![r#"PUSHGATE_APPS__NOPE__API_KEYS: no app with id or index "NOPE""#.to_owned()]);
}

#[test]
fn an_unknown_key_is_named_with_its_section() {
    let error = load_text("[server]\nlisten_on = \"x\"\n", &[]).unwrap_err();
    assert!(error.0[0].starts_with("server.listen_on: unknown field `listen_on`, expected one of `listen`"), "{error}");
}

#[test]
fn a_bad_listen_address_names_the_variable_and_the_key() {
    let error = Config::load(None, env(&[("PUSHGATE_SERVER__LISTEN", "localhost")])).unwrap_err();
    assert!(error.0[0].starts_with("PUSHGATE_SERVER__LISTEN (server.listen): "), "{error}");
}

#[test]
fn a_misspelt_variable_is_named_as_the_user_typed_it() {
    let typos = [("PUSHGATE_SERVER__LISTN", "1"), ("PUSHGATE_APPS__SAMPLEAPP__ROUTING__ONLIN", "skip")];
    let error = Config::load(None, env(&typos)).unwrap_err();
    assert!(error.0.iter().any(|problem| problem.starts_with("PUSHGATE_SERVER__LISTN (server.listn): unknown field")));
    assert!(
        error.0.iter().any(|problem| {
            problem.starts_with("PUSHGATE_APPS__SAMPLEAPP__ROUTING__ONLIN (apps[0].routing.onlin): unknown field")
        }),
        "{error}"
    );
}

#[test]
fn short_api_keys_are_refused() {
    let error = load_text("[[apps]]\nid = \"A\"\napi_keys = [\"short\"]\n", &[]).unwrap_err();
    assert_eq!(
        error.0,
        vec!["apps[0].api_keys[0]: an API key must be at least 16 characters without surrounding space".to_owned()]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[[apps]]\nid = \"A\"\n[[apps]]\nid = \"A\"\n[apps.apns]\nkey_file = \"/nonexistent.p8\"\nkey_id = \"ABC\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"io.imkit.app\"\n";
    let error = load_text(text, &[]).unwrap_err();
    let joined = error.to_string();
    assert!(joined.contains("apps[1].id: \"A\" is used by another app"), "{joined}");
    assert!(joined.contains("apps[1].apns.key_file: cannot read /nonexistent.p8"), "{joined}");
    assert!(
        joined.contains(
            r#"apps[1].apns.key_id: must be Apple's id, 10 upper-case letters and digits such as ABC123DEFG, got "ABC""#
        ),
        "{joined}"
    );
}

#[test]
fn problems_found_while_reading_do_not_hide_the_others() {
    let text = "[server]\nlisten_on = \"x\"\n[[apps]]\nid = \"A\"\napi_keys = [\"short\"]\n[apps.apns]\nkey_file = \"/nonexistent.p8\"\nkey_id = \"ABC123DEFG\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"io.imkit.app\"\nenvironment = \"staging\"\n";
    let problems = load_text(text, &[]).unwrap_err().0;
    assert_eq!(problems.len(), 4, "{problems:?}");
    for expected in [
        "server.listen_on: unknown field",
        "apps[0].apns.environment: unknown variant `staging`",
        "apps[0].api_keys[0]: an API key must be at least",
        "apps[0].apns.key_file: cannot read",
    ] {
        assert!(problems.iter().any(|problem| problem.starts_with(expected)), "{expected}: {problems:?}");
    }
}

#[test]
fn relative_paths_are_relative_to_the_config_files_folder() {
    let directory = tempfile::tempdir().expect("temp dir");
    std::fs::write(directory.path().join("keys"), "key-from-a-file-0001\n").expect("write");
    let config_path = directory.path().join("pushgate.toml");
    std::fs::write(&config_path, "[[apps]]\nid = \"A\"\napi_keys_file = \"keys\"\n").expect("write");
    let config = Config::load(Some(&config_path), env(&[])).expect("the key file is found beside the config");
    assert_eq!(config.apps[0].api_keys_file.as_deref(), Some(directory.path().join("keys").as_path()));
    assert_eq!(config.apps[0].api_keys[0].expose_secret(), "key-from-a-file-0001");
}

#[test]
fn a_firebase_client_file_is_named_as_such() {
    let directory = tempfile::tempdir().expect("temp dir");
    let client = directory.path().join("google-services.json");
    std::fs::write(&client, r#"{"project_info":{"project_id":"demo"},"client":[{"api_key":[]}]}"#).expect("write");
    let text = format!("[[apps]]\nid = \"A\"\n[apps.fcm]\nservice_account_file = {:?}\n", client.display().to_string());
    let error = load_text(&text, &[]).unwrap_err().to_string();
    assert!(error.contains("is a Firebase client file (google-services.json)"), "{error}");
}

#[test]
fn api_keys_can_be_read_from_a_file() {
    let directory = tempfile::tempdir().expect("temp dir");
    let keys = directory.path().join("keys");
    std::fs::write(&keys, "# production\nkey-from-a-file-0001\n\nkey-from-a-file-0002 # rotated\n").expect("write");
    let text = format!("[[apps]]\nid = \"A\"\napi_keys_file = {:?}\n", keys.display().to_string());
    let config = load_text(&text, &[]).expect("valid");
    let loaded: Vec<_> = config.apps[0].api_keys.iter().map(|key| key.expose_secret().to_owned()).collect();
    assert_eq!(loaded, ["key-from-a-file-0001", "key-from-a-file-0002"]);
}

#[test]
fn tls_needs_both_files() {
    let error = Config::load(None, env(&[("PUSHGATE_SERVER__TLS_CERT", "cert.pem")])).unwrap_err();
    assert_eq!(error.0, vec!["server.tls_cert and server.tls_key must be given together".to_owned()]);
}

#[test]
fn the_store_url_names_sqlite_or_postgres_and_nothing_else() {
    let config = Config::load(None, env(&[("PUSHGATE_STORE__URL", "postgres://localhost/test")])).expect("valid");
    assert_eq!(StoreKind::of(&config.store.url), Some(StoreKind::Postgres));
    assert_eq!(StoreKind::of("postgresql://localhost/test"), Some(StoreKind::Postgres));
    assert_eq!(StoreKind::of("sqlite://pushgate.db"), Some(StoreKind::Sqlite));
    let error = Config::load(None, env(&[("PUSHGATE_STORE__URL", "mysql://localhost/test")])).unwrap_err();
    assert!(error.0[0].starts_with("store.url: expected sqlite://<path> or postgres://"), "{error}");
}

#[test]
fn bad_cidrs_in_the_allowlist_name_the_key() {
    let error = load_text("[[apps]]\nid = \"A\"\ngeneric_push = { allow_ips = [\"10.0.0.0/33\"] }\n", &[]).unwrap_err();
    assert!(error.0[0].starts_with("apps[0].generic_push.allow_ips[0]: "), "{error}");
}

#[test]
fn a_secret_never_shows_in_the_debug_print() {
    let config = Config::load(None, env(&[("PUSHGATE_APPS__SAMPLEAPP__API_KEYS", r#"["very-secret-key-000"]"#)]))
        .expect("valid");
    assert!(!format!("{config:?}").contains("very-secret-key-000"));
}

fn write(directory: &Path, name: &str, content: &str) -> String {
    let path = directory.join(name);
    std::fs::write(&path, content).expect("write");
    path.display().to_string()
}

#[test]
fn a_real_p8_key_and_a_real_service_account_are_accepted() {
    let directory = tempfile::tempdir().expect("temp dir");
    let key = pushgate_testkit::Es256Key::generate();
    let account = pushgate_testkit::TestServiceAccount::generate("imkit-demo", "https://oauth2.googleapis.com/token");
    let p8 = write(directory.path(), "AuthKey_ABC123DEFG.p8", &key.private_pem);
    let json = write(directory.path(), "service-account.json", &account.json);
    let text = format!(
        "[[apps]]\nid = \"A\"\n[apps.apns]\nkey_file = {p8:?}\nkey_id = \"ABC123DEFG\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"io.imkit.app\"\n[apps.fcm]\nservice_account_file = {json:?}\n"
    );
    let config = load_text(&text, &[]).expect("valid");
    assert_eq!(config.apps[0].apns.as_ref().map(|apns| apns.connections), Some(2));
}

#[test]
fn a_p8_file_that_is_not_a_p256_key_is_refused_at_start() {
    let directory = tempfile::tempdir().expect("temp dir");
    let p8 = write(directory.path(), "AuthKey.p8", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let text = format!(
        "[[apps]]\nid = \"A\"\n[apps.apns]\nkey_file = {p8:?}\nkey_id = \"ABC123DEFG\"\nteam_id = \"DEF123GHIJ\"\ntopic = \"t\"\n"
    );
    let error = load_text(&text, &[]).expect_err("invalid key");
    assert!(error.0[0].starts_with("apps[0].apns.key_file: the APNs key is not a P-256 private key"), "{error}");
}

#[test]
fn certificate_authentication_is_the_alternative_and_half_of_each_is_refused() {
    let directory = tempfile::tempdir().expect("temp dir");
    let ca = pushgate_testkit::TestCa::generate();
    let (chain, key) = ca.client_certificate("push");
    let chain = write(directory.path(), "push.pem", &chain);
    let key = write(directory.path(), "push.key", &key);
    let text = format!(
        "[[apps]]\nid = \"A\"\n[apps.apns]\ncertificate_file = {chain:?}\ncertificate_key_file = {key:?}\ntopic = \"t\"\n"
    );
    load_text(&text, &[]).expect("certificate auth is valid");
    let mixed = format!(
        "[[apps]]\nid = \"A\"\n[apps.apns]\ncertificate_file = {chain:?}\nkey_id = \"ABC123DEFG\"\ntopic = \"t\"\n"
    );
    let error = load_text(&mixed, &[]).expect_err("mixed auth");
    assert!(error.0[0].starts_with("apps[0].apns: give either key_file, key_id and team_id"), "{error}");
}

#[test]
fn a_service_account_with_a_broken_key_is_refused_at_start() {
    let directory = tempfile::tempdir().expect("temp dir");
    let account = pushgate_testkit::TestServiceAccount::generate("p", "https://oauth2.googleapis.com/token");
    let mut json: serde_json::Value = serde_json::from_str(&account.json).expect("json");
    json["private_key"] = "not a key".into();
    let path = write(directory.path(), "sa.json", &json.to_string());
    let text = format!("[[apps]]\nid = \"A\"\n[apps.fcm]\nservice_account_file = {path:?}\n");
    let error = load_text(&text, &[]).expect_err("broken key");
    assert!(
        error.0[0].starts_with("apps[0].fcm.service_account_file: the service account's private_key is not an RSA key"),
        "{error}"
    );
}

#[test]
fn the_documented_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pushgate.example.toml");
    let config = Config::load(Some(&example), env(&[])).expect("pushgate.example.toml is valid");
    assert_eq!(config.delivery.max_attempts, 10);
    assert_eq!(config.apps[0].id, "SampleApp");
}

#[test]
fn telemetry_is_off_by_default_and_its_keys_are_checked() {
    let config = Config::load(None, env(&[])).expect("defaults are valid");
    assert!(config.telemetry.otlp_endpoint.is_none());
    assert_eq!((config.telemetry.service_name.as_str(), config.telemetry.sample_ratio), ("pushgate", 1.0));
    let config = load_text("[telemetry]\notlp_endpoint = \"http://otel-collector:4318\"\nsample_ratio = 0.25\n", &[])
        .expect("valid");
    assert_eq!(config.telemetry.otlp_endpoint.map(String::from).as_deref(), Some("http://otel-collector:4318/"));
    let error =
        load_text("[telemetry]\notlp_endpoint = \"ftp://collector\"\nsample_ratio = 2\nservice_name = \" \"\n", &[])
            .expect_err("refused")
            .to_string();
    for key in ["telemetry.otlp_endpoint: ", "telemetry.sample_ratio: ", "telemetry.service_name: "] {
        assert!(error.contains(key), "{key} in {error}");
    }
}
