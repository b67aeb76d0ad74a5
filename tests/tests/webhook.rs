//! `syscribe webhook` over real HTTPS, as the API server calls it: an AdmissionReview POSTed
//! by curl, trusting only the test's own CA; a renewed certificate is served without a restart.
//! Its limits, each against what an attacker would send: idle connections by the hundred, a
//! head over 16 KiB, a body over 1 MiB, a review with 100k bad names.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
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

impl Webhook {
    fn addr(&self) -> &str {
        self.url
            .strip_prefix("https://")
            .and_then(|rest| rest.split('/').next())
            .unwrap()
    }

    /// /metrics, trusting `ca`.
    fn metrics(&self, ca: &Path) -> String {
        let output = Command::new("curl")
            .args(["--silent", "--max-time", "10", "--cacert"])
            .arg(ca)
            .arg(self.url.replace("/validate", "/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The webhook's peak resident memory so far, in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"))
    }
}

/// The value of the metric whose line starts with `name`.
fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

fn start(cert: &Path, key: &Path) -> Webhook {
    start_with(cert, key, &[])
}

fn start_with(cert: &Path, key: &Path, args: &[&str]) -> Webhook {
    let mut child = syscribe()
        .args(["webhook", "--addr", "127.0.0.1:0", "--cert"])
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn syscribe webhook");
    let mut line = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    stderr.read_line(&mut line).unwrap();
    if line.starts_with("syscribe: compiling SELinux profiles against ") {
        line.clear();
        stderr.read_line(&mut line).unwrap();
    }
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
    let mut curl = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl (installed by cargo xtask setup)");
    // Fed from a thread: curl may answer before it has read it all.
    let mut stdin = curl.stdin.take().unwrap();
    let body = body.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(body.as_bytes());
    });
    let output = curl.wait_with_output().unwrap();
    feeder.join().unwrap();
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

/// Sends `bytes` over TLS (openssl s_client, trusting only `ca`) and returns what the webhook
/// answered within `wait`; nothing more is sent meanwhile and the connection stays open.
fn raw(webhook: &Webhook, ca: &Path, bytes: &[u8], wait: Duration) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-CAfile"])
        .arg(ca)
        .args(["-connect", webhook.addr()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(bytes).unwrap();
    stdin.flush().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + wait;
    let mut answer = Vec::new();
    while let Ok(bytes) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        answer.extend(bytes);
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    String::from_utf8_lossy(&answer).into_owned()
}

/// 300 connections that never send a byte (a slowloris) from one address: at most 64 are held
/// (per peer), each new one closing the oldest silent one, and a real review is answered at
/// once — not after some deadline frees a slot.
#[test]
fn hundreds_of_idle_connections_do_not_starve_a_real_review() {
    let dir = TempDir::new("webhook-idle");
    let (cert, key) = certificate(&dir, "first");
    let webhook = start(&cert, &key);
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(webhook.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // all accepted
    let started = Instant::now();
    let (ok, body) = post(&webhook.url, &cert, &review("CREATE", &["read"]));
    let took = started.elapsed();
    assert!(ok, "the review failed: {body:?}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}: waited for a deadline (2 s) rather than taking a slot"
    );
    let metrics = webhook.metrics(&cert);
    let evicted = metric(
        &metrics,
        "syscribe_webhook_connections_closed_total{reason=\"evicted\"}",
    );
    assert!(evicted >= 300 - 64, "{metrics}");
    assert_eq!(
        metric(
            &metrics,
            "syscribe_webhook_connections_refused_total{reason=\"peer_full\"}"
        ),
        0,
        "{metrics}"
    );
    drop(idle);
}

/// A head over 16 KiB (one of 17 KiB, sent whole with its blank line): 431, not served.
#[test]
fn a_head_over_16_kib_is_refused_with_431() {
    let dir = TempDir::new("webhook-head");
    let (cert, key) = certificate(&dir, "first");
    let webhook = start(&cert, &key);
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let answer = raw(&webhook, &cert, head.as_bytes(), Duration::from_secs(5));
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.ends_with("the request head is over 16 KiB\n"),
        "{answer:?}"
    );
    let metrics = webhook.metrics(&cert);
    assert_eq!(
        metric(
            &metrics,
            "syscribe_webhook_requests_refused_total{reason=\"head_too_large\"}"
        ),
        1,
        "{metrics}"
    );
}

/// A Content-Length over 1 MiB: 413 from the head alone (no byte of the body is sent); and
/// curl sending such a body reads the 413 (not a reset).
#[test]
fn a_body_over_1_mib_is_refused_with_413_from_its_content_length() {
    let dir = TempDir::new("webhook-body");
    let (cert, key) = certificate(&dir, "first");
    let webhook = start(&cert, &key);
    let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 1048577\r\n\r\n";
    let answer = raw(&webhook, &cert, head.as_bytes(), Duration::from_secs(3));
    assert!(
        answer.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{answer:?}"
    );
    assert!(
        answer.ends_with("the request body (1048577 bytes) is over 1024 KiB\n"),
        "{answer:?}"
    );

    let body = dir.join("big.json");
    std::fs::write(&body, vec![b' '; 2 * 1024 * 1024]).unwrap();
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "10", "--output", "/dev/null"])
        .args(["--write-out", "%{http_code}", "--cacert"])
        .arg(&cert)
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(&webhook.url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "413");
    let metrics = webhook.metrics(&cert);
    assert_eq!(
        metric(
            &metrics,
            "syscribe_webhook_requests_refused_total{reason=\"body_too_large\"}"
        ),
        2,
        "{metrics}"
    );
}

/// 100k unknown syscall names (an 0.9 MB review): the denial lists the first 50 and says how
/// many more there are, in an answer of at most 64 KiB; then the worst review checked (the
/// most problems per byte) keeps the webhook under its Deployment's memory limit.
#[test]
fn a_review_with_100k_bad_names_gets_a_bounded_answer_that_counts_the_rest() {
    let dir = TempDir::new("webhook-problems");
    let (cert, key) = certificate(&dir, "first");
    let webhook = start(&cert, &key);
    let names: Vec<String> = (0..100_000).map(|i| format!("x{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (ok, body) = post(&webhook.url, &cert, &review("CREATE", &names));
    assert!(ok, "{body:?}");
    assert!(body.len() <= 64 * 1024, "{} bytes", body.len());
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(message.matches("unknown syscall").count(), 50, "{message}");
    assert!(
        message.ends_with(
            "names[49]: unknown syscall \"x49\" on SCMP_ARCH_X86_64; and 99950 more problems"
        ),
        "{message}"
    );
    let metrics = webhook.metrics(&cert);
    assert_eq!(
        metric(&metrics, "syscribe_webhook_problems_omitted_total"),
        99950,
        "{metrics}"
    );

    // The most problems per byte (`"a",`: four bytes, a tree node and two problems, unknown
    // and repeated), as many as are checked (MAX_VALUES, 131072); then more: not checked.
    let (ok, body) = post(&webhook.url, &cert, &review("CREATE", &vec!["a"; 131_000]));
    assert!(ok, "{body:?}");
    assert!(body.len() <= 64 * 1024, "{} bytes", body.len());
    assert!(body.contains("; and 261949 more problems\""), "{body}");
    let (ok, body) = post(&webhook.url, &cert, &review("CREATE", &vec!["a"; 200_000]));
    assert!(ok, "{body:?}");
    assert!(
        body.contains("is too large to check: its review holds 200053 JSON values"),
        "{body}"
    );
    let deployment = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/webhook/deployment.yaml"),
    )
    .unwrap();
    assert!(
        deployment.contains("limits: {memory: 128Mi}"),
        "{deployment}"
    );
    let peak = webhook.peak_rss_kib();
    eprintln!("webhook peak RSS: {peak} KiB");
    assert!(
        peak < 128 * 1024,
        "peak RSS {peak} KiB, over the pod's 128 MiB"
    );
}

fn selinux_review(policy: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "5d0f3c1e-2b7a-4c59-8e61-0a9b8c7d6e5f",
            "kind": {"group": "security-profiles-operator.x-k8s.io", "version": "v1alpha2", "kind": "RawSelinuxProfile"},
            "resource": {"group": "security-profiles-operator.x-k8s.io", "version": "v1alpha2", "resource": "rawselinuxprofiles"},
            "name": "spooler", "operation": "CREATE",
            "object": {
                "apiVersion": "security-profiles-operator.x-k8s.io/v1alpha2", "kind": "RawSelinuxProfile",
                "metadata": {"name": "spooler"},
                "spec": {"policy": policy}
            }
        }
    })
}

/// Debian's reference policy store (selinux-policy-default; readable by root only).
const STORE: &str = "/var/lib/selinux/default";

#[test]
fn with_a_policy_store_selinux_profiles_are_compiled_before_they_are_admitted() {
    require_root();
    assert!(
        Path::new(STORE).join("active/modules").is_dir(),
        "{STORE} is missing: install selinux-policy-default (cargo xtask test does)"
    );
    let dir = TempDir::new("webhook-compile");
    let (cert, key) = certificate(&dir, "compile");
    let webhook = start_with(
        &cert,
        &key,
        &["--policy-store", STORE, "--compile-timeout", "25"],
    );

    let bad = "(blockinherit container)\n(allow process var_spool_tt (dir (search)))\n";
    let (ok, body) = post(&webhook.url, &cert, &selinux_review(bad));
    assert!(ok, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.policy: policy line 2:1: the CIL compiler refused it: Failed to resolve allow statement: \"var_spool_tt\" is not a type or attribute of the policy (did you mean \"var_spool_t\"?)"),
        "{message}"
    );

    let good = "(blockinherit container)\n(allow process var_spool_t (dir (search)))\n";
    let (ok, body) = post(&webhook.url, &cert, &selinux_review(good));
    assert!(ok, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(answer["response"].get("warnings"), None, "{answer}");
    drop(webhook);

    // Out of time: admitted, and the warning says it was not compiled.
    let webhook = start_with(
        &cert,
        &key,
        &["--policy-store", STORE, "--compile-timeout", "0"],
    );
    let (ok, body) = post(&webhook.url, &cert, &selinux_review(bad));
    assert!(ok, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert!(
        answer["response"]["warnings"]
            .to_string()
            .contains("not compiled against a policy: secilc took more than 0 s"),
        "{answer}"
    );
}
