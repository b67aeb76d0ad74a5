//! `syscribe webhook` over real HTTPS, as the API server calls it: an AdmissionReview POSTed
//! by curl, trusting only the test's own CA; a renewed certificate is served without a restart.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use serde_json::{Value, json};
use syscribe_tests::*;

/// A self-signed certificate for localhost/127.0.0.1 (its own CA), written as cert and key.
fn certificate(dir: &TempDir, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(&format!("{name}.crt")),
        dir.join(&format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=syscribe-webhook.syscribe.svc",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (installed by cargo xtask setup)");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

struct Webhook {
    child: Child,
    url: String,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cert: &Path, key: &Path) -> Webhook {
    let mut child = syscribe()
        .args(["webhook", "--addr", "127.0.0.1:0", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syscribe webhook");
    let mut line = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut line).unwrap();
    // The rest (logs) is drained and echoed, so the webhook never writes to a closed pipe.
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("webhook: {line}");
        }
    });
    let url = line
        .trim()
        .strip_prefix("syscribe: webhook listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Webhook { child, url }
}

/// POSTs `body` with curl trusting only `ca`; returns curl's success and the response body.
fn post(url: &str, ca: &Path, body: &Value) -> (bool, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(body.to_string())
        .arg(url)
        .output()
        .expect("curl (installed by cargo xtask setup)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn review(operation: &str, names: &[&str]) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "b0a7c6a4-1c5e-4a53-9a39-3f1d0e1e2f10",
            "kind": {"group": "security-profiles-operator.x-k8s.io", "version": "v1", "kind": "SeccompProfile"},
            "resource": {"group": "security-profiles-operator.x-k8s.io", "version": "v1", "resource": "seccompprofiles"},
            "name": "web", "operation": operation,
            "object": {
                "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
                "metadata": {"name": "web"},
                "spec": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                         "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]}
            }
        }
    })
}

#[test]
fn reviews_over_https_and_serves_a_renewed_certificate() {
    let dir = TempDir::new("webhook");
    let (cert, key) = certificate(&dir, "first");
    let webhook = start(&cert, &key);

    let (ok, body) = post(
        &webhook.url,
        &cert,
        &review("CREATE", &["read", "exit_group"]),
    );
    assert!(ok, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        answer["response"]["uid"],
        "b0a7c6a4-1c5e-4a53-9a39-3f1d0e1e2f10"
    );

    let (ok, body) = post(
        &webhook.url,
        &cert,
        &review("UPDATE", &["read", "clock_gettiem"]),
    );
    assert!(ok, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "SeccompProfile \"web\" is invalid: spec.syscalls[0].names[1]: unknown syscall \
         \"clock_gettiem\" on SCMP_ARCH_X86_64 (did you mean \"clock_gettime\"?)"
    );

    // A body that is not a review: 400, and the server goes on.
    let output = Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&cert)
        .args(["--data-binary", "{"])
        .arg(&webhook.url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "400");

    // cert-manager renews the certificate in place: the next connection gets the new one,
    // which the old CA no longer verifies.
    let old_ca = dir.join("first-old.crt");
    std::fs::copy(&cert, &old_ca).unwrap();
    let (new_cert, new_key) = certificate(&dir, "second");
    std::thread::sleep(std::time::Duration::from_millis(20)); // a distinct modification time
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let (ok, body) = post(&webhook.url, &new_cert, &review("CREATE", &["read"]));
    assert!(ok, "the renewed certificate is served: {body}");
    let (old_trusted, _) = post(&webhook.url, &old_ca, &review("CREATE", &["read"]));
    assert!(!old_trusted, "the old certificate is no longer served");

    let metrics_url = webhook.url.replace("/validate", "/metrics");
    let output = Command::new("curl")
        .args(["--silent", "--cacert"])
        .arg(&new_cert)
        .arg(&metrics_url)
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&output.stdout);
    assert!(
        metrics.contains("syscribe_webhook_reviews_total{allowed=\"true\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("syscribe_webhook_reviews_total{allowed=\"false\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("syscribe_webhook_bad_requests_total 1"),
        "{metrics}"
    );
}

/// A log line it cannot write (its stderr's reader is gone) does not stop it.
#[test]
fn a_closed_stderr_does_not_stop_it() {
    let dir = TempDir::new("webhook-stderr");
    let (cert, key) = certificate(&dir, "first");
    let mut child = syscribe()
        .args(["webhook", "--addr", "127.0.0.1:0", "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syscribe webhook");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap(); // the reader goes here: stderr is a pipe nobody reads
    let url = line
        .trim()
        .strip_prefix("syscribe: webhook listening on ")
        .unwrap()
        .replace("/validate", "/healthz");
    // A renewed certificate makes it log.
    let (new_cert, new_key) = certificate(&dir, "second");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let output = Command::new("curl")
        .args(["--silent", "--cacert"])
        .arg(&new_cert)
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(alive, "the webhook died of its own log line");
}
