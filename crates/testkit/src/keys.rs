//! Signing keys in the shapes the providers hand out.

use rcgen::KeyPair;

/// A P-256 key pair: the private half as Apple's `.p8` (PKCS#8 PEM), the
/// public half (SPKI PEM) for the fake to verify with.
#[derive(Debug, Clone)]
pub struct Es256Key {
    /// PKCS#8 PEM, as in an `AuthKey_XXXXXXXXXX.p8` file.
    pub private_pem: String,
    /// SPKI PEM.
    pub public_pem: String,
}

impl Es256Key {
    /// A new random key.
    pub fn generate() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        Self { private_pem: key.serialize_pem(), public_pem: key.public_key_pem() }
    }
}

/// A Google service account with a fresh RSA key whose `token_uri` points at
/// a fake token endpoint.
#[derive(Debug, Clone)]
pub struct TestServiceAccount {
    /// The service-account JSON, as Google's console downloads it.
    pub json: String,
    /// The public half of its key (SPKI PEM), for the fake to verify with.
    pub public_pem: String,
    /// `project_id`.
    pub project_id: String,
    /// `client_email`.
    pub client_email: String,
    /// `token_uri`.
    pub token_uri: String,
}

impl TestServiceAccount {
    /// A new account for `project_id` whose tokens come from `token_uri`.
    pub fn generate(project_id: &str, token_uri: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let client_email = format!("pushgate@{project_id}.iam.gserviceaccount.com");
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": "0123456789abcdef",
            "private_key": key.serialize_pem(),
            "client_email": client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string();
        Self {
            json,
            public_pem: key.public_key_pem(),
            project_id: project_id.to_owned(),
            client_email,
            token_uri: token_uri.to_owned(),
        }
    }
}
