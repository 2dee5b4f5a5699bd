//! The files a configuration names: relative paths resolved against the
//! configuration file's folder, and secrets read from their files.

use super::*;

impl Config {
    /// Makes every relative file path relative to the configuration file's
    /// folder (not to the working directory, which depends on how pushgate was started).
    pub(super) fn resolve_paths(&mut self, folder: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = folder.join(&*path);
            }
        };
        let resolve_some = |path: &mut Option<PathBuf>| {
            if let Some(path) = path {
                resolve(path);
            }
        };
        resolve_some(&mut self.server.tls_cert);
        resolve_some(&mut self.server.tls_key);
        resolve_some(&mut self.admin.api_keys_file);
        for app in &mut self.apps {
            resolve_some(&mut app.api_keys_file);
            if let Some(generic) = &mut app.generic_push {
                resolve_some(&mut generic.secret_file);
            }
            if let Some(apns) = &mut app.apns {
                resolve_some(&mut apns.key_file);
                resolve_some(&mut apns.certificate_file);
                resolve_some(&mut apns.certificate_key_file);
                resolve_some(&mut apns.ca_file);
            }
            if let Some(fcm) = &mut app.fcm {
                resolve(&mut fcm.service_account_file);
                resolve_some(&mut fcm.ca_file);
            }
            if let Some(webpush) = &mut app.webpush {
                resolve(&mut webpush.vapid_private_key_file);
                resolve_some(&mut webpush.ca_file);
            }
            if let Some(imkit) = &mut app.imkit {
                resolve_some(&mut imkit.ca_file);
            }
        }
    }

    /// Reads every secret given as a file (`secret_file`, `api_keys_file`),
    /// surrounding white space left out; a file that cannot be read is a problem.
    pub(super) fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let read_keys = |path: &Path, keys: &mut Vec<SecretString>, at: &str, problems: &mut Vec<String>| {
            match std::fs::read_to_string(path) {
                Ok(text) => keys.extend(
                    text.lines()
                        .map(|line| line.split('#').next().unwrap_or_default().trim())
                        .filter(|line| !line.is_empty())
                        .map(|line| SecretString::from(line.to_owned())),
                ),
                Err(error) => problems.push(format!("{at}.api_keys_file: cannot read {}: {error}", path.display())),
            }
        };
        if let Some(path) = &self.admin.api_keys_file {
            read_keys(path, &mut self.admin.api_keys, "admin", &mut problems);
        }
        for (index, app) in self.apps.iter_mut().enumerate() {
            if let Some(path) = &app.api_keys_file {
                read_keys(path, &mut app.api_keys, &format!("apps[{index}]"), &mut problems);
            }
            if let Some(generic) = &mut app.generic_push
                && let Some(path) = &generic.secret_file
            {
                if generic.secret.is_some() {
                    problems.push(format!("apps[{index}].generic_push: give secret or secret_file, not both"));
                }
                match std::fs::read_to_string(path) {
                    Ok(text) => generic.secret = Some(SecretString::from(text.trim().to_owned())),
                    Err(error) => {
                        problems.push(format!(
                            "apps[{index}].generic_push.secret_file: cannot read {}: {error}",
                            path.display()
                        ));
                    }
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }
}
