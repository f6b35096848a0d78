//! [E] Load probes: a command's output, a JSON field over HTTP(S), or a file, read under a
//! timeout. A reading must be a number from 0.0 to 1.0; anything else is an error and the
//! load becomes unknown (never a guess).

use std::time::Duration;

use super::http::HttpClient;
use super::probe::run_command;
use super::spec::{LoadKind, MAX_BODY};

/// A load probe ready to run (its HTTP client, if any, built once).
pub struct LoadReader {
    kind: LoadKind,
    http: Option<HttpClient>,
}

impl LoadReader {
    /// Prepares readings of `kind`.
    pub fn new(kind: &LoadKind) -> Self {
        let http = match kind {
            LoadKind::Http { target, .. } => Some(HttpClient::new(target)),
            LoadKind::Exec { .. } | LoadKind::File { .. } => None,
        };
        Self {
            kind: kind.clone(),
            http,
        }
    }

    /// Reads the load once, giving up after `timeout`.
    pub async fn measure(&self, timeout: Duration) -> Result<f32, String> {
        match tokio::time::timeout(timeout, self.measure_inner()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no reading within {} ms", timeout.as_millis())),
        }
    }

    async fn measure_inner(&self) -> Result<f32, String> {
        let value = match (&self.kind, &self.http) {
            (LoadKind::Exec { argv }, _) => {
                let (code, output) = run_command(argv).await?;
                if code != Some(0) {
                    return Err(format!("{} exited with {code:?}", argv[0]));
                }
                first_number(&output)?
            }
            (LoadKind::File { path }, _) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                first_number(&text)?
            }
            (LoadKind::Http { field, .. }, Some(client)) => json_field(client, field).await?,
            (LoadKind::Http { .. }, None) => return Err("no HTTP client".to_owned()),
        };
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(format!("load {value} is outside 0.0 to 1.0"))
        }
    }
}

/// Reads the load once, giving up after `timeout` (a [`LoadReader`] used once).
pub async fn measure(kind: &LoadKind, timeout: Duration) -> Result<f32, String> {
    LoadReader::new(kind).measure(timeout).await
}

/// The number at dotted path `field` of the JSON document the client fetches.
async fn json_field(client: &HttpClient, field: &str) -> Result<f32, String> {
    let fetched = client.get(true).await?;
    if fetched.status != 200 {
        return Err(format!("status {}, expected 200", fetched.status));
    }
    if fetched.truncated {
        return Err(format!("document larger than {MAX_BODY} bytes"));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fetched.body).map_err(|e| format!("not JSON: {e}"))?;
    let found = field
        .split('.')
        .try_fold(&json, |v, key| v.get(key))
        .ok_or_else(|| format!("no field `{field}`"))?;
    Ok(found
        .as_f64()
        .ok_or_else(|| format!("field `{field}` is not a number"))? as f32)
}

fn first_number(text: &str) -> Result<f32, String> {
    let token = text.split_whitespace().next().ok_or("empty reading")?;
    token
        .parse()
        .map_err(|_| format!("`{token}` is not a number"))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn reads_commands_files_and_json_fields() {
        let sh = |s: &str| LoadKind::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), s.into()],
        };
        assert_eq!(measure(&sh("echo 0.42 extra"), T).await, Ok(0.42));
        assert!(
            measure(&sh("echo 42"), T)
                .await
                .unwrap_err()
                .contains("outside")
        );
        assert!(
            measure(&sh("echo busy"), T)
                .await
                .unwrap_err()
                .contains("not a number")
        );
        assert!(measure(&sh("exit 3"), T).await.is_err());
        let file = std::env::temp_dir().join(format!("sparrow-load-{}", std::process::id()));
        std::fs::write(&file, "0.75\n").unwrap();
        assert_eq!(
            measure(&LoadKind::File { path: file.clone() }, T).await,
            Ok(0.75)
        );
        std::fs::remove_file(&file).unwrap();
        assert!(measure(&LoadKind::File { path: file }, T).await.is_err());

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body = r#"{"stats":{"load":0.3,"name":"x"}}"#;
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        let http = |field: &str| LoadKind::Http {
            target: crate::health::HttpTarget {
                url: format!("http://{addr}/stats"),
                authority: addr.clone(),
                host: addr.clone(),
                path: "/stats".into(),
                tls: None,
            },
            field: field.into(),
        };
        assert_eq!(measure(&http("stats.load"), T).await, Ok(0.3));
        assert!(
            measure(&http("stats.cpu"), T)
                .await
                .unwrap_err()
                .contains("no field")
        );
        assert!(
            measure(&http("stats.name"), T)
                .await
                .unwrap_err()
                .contains("not a number")
        );
        let slow = sh("sleep 10");
        assert!(
            measure(&slow, Duration::from_millis(100))
                .await
                .unwrap_err()
                .contains("no reading")
        );
    }
}
