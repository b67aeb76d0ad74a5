//! `syscribe webhook`: a validating admission webhook (HTTPS, AdmissionReview v1) that runs
//! `syscribe validate`'s checks on SeccompProfile and SelinuxProfile creates and updates. An
//! invalid profile is refused with every problem (`spec.syscalls[0].names[1]: unknown syscall
//! "raed" … (did you mean "read"?)`); warnings are returned as admission warnings, which
//! kubectl prints. The certificate is re-read when its files change (cert-manager renews it in
//! place). Bounded: connections, request heads and bodies; each bound has a counter on /metrics.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
};
use tokio_rustls::TlsAcceptor;

use crate::profile::validate::{SelinuxPolicy, Severity, Validator};

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Where to listen (HTTPS).
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub addr: SocketAddr,
    /// The serving certificate (PEM, chain first), e.g. cert-manager's `tls.crt`.
    #[arg(long, default_value = "/etc/syscribe/tls/tls.crt")]
    pub cert: PathBuf,
    /// Its private key (PEM), e.g. cert-manager's `tls.key`.
    #[arg(long, default_value = "/etc/syscribe/tls/tls.key")]
    pub key: PathBuf,
    /// An SELinux policy (selinuxfs layout) to check SelinuxProfile classes and permissions
    /// against; default: the syntax of labels only.
    #[arg(long, value_name = "DIR")]
    pub selinux_policy: Option<PathBuf>,
    /// Connections served at once; more are closed at once (and counted).
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
}

#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("{path}: {reason}", path = .path.display())]
    Tls { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}", path = .path.display())]
    Policy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Largest request head and body read (the API server sends at most 3 MiB objects).
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A kept-alive client that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(30);
/// A TLS handshake, and a request from its first byte to its last, must take at most this
/// (a client trickling bytes cannot hold a connection slot).
const REQUEST: Duration = Duration::from_secs(10);
/// Request bodies held at once, all connections together, in KiB (the memory bound: the
/// Deployment's limit is 128 MiB).
const BODY_BUDGET_KIB: usize = 48 * 1024;

/// What every connection shares.
struct Shared {
    validator: Arc<Mutex<Validator>>,
    counters: Counters,
    /// KiB of request bodies that may still be read.
    bodies: tokio::sync::Semaphore,
}

/// Why a review could not be answered (an HTTP 400, not a denial).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("expected an admission.k8s.io/v1 AdmissionReview, found {0}")]
    NotAReview(String),
    #[error("the AdmissionReview has no request.uid")]
    NoUid,
}

/// The AdmissionReview answering `body`: allowed unless the object has errors.
pub fn review(validator: &mut Validator, body: &[u8]) -> Result<Value, ReviewError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    let api_version = review["apiVersion"].as_str().unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(ReviewError::NotAReview(format!(
            "apiVersion {api_version:?}, kind {}",
            review["kind"]
        )));
    }
    let request = &review["request"];
    let uid = request["uid"].as_str().ok_or(ReviewError::NoUid)?;
    let respond = |allowed: bool, message: Option<String>, warnings: Vec<String>| {
        let mut response = json!({"uid": uid, "allowed": allowed});
        if let Some(message) = message {
            response["status"] = json!({"code": 422, "reason": "Invalid", "message": message});
        }
        if !warnings.is_empty() {
            response["warnings"] = json!(warnings);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    };
    let kind = request["kind"]["kind"].as_str().unwrap_or_default();
    let operation = request["operation"].as_str().unwrap_or_default();
    if !matches!(operation, "CREATE" | "UPDATE")
        || !matches!(kind, "SeccompProfile" | "SelinuxProfile")
    {
        // Not ours to judge (the webhook configuration sends only these).
        return Ok(respond(true, None, Vec::new()));
    }
    // A change that leaves the spec alone (finalizers, labels, annotations) passes: a profile
    // admitted before this webhook existed must still be deletable.
    if operation == "UPDATE" && request["oldObject"]["spec"] == request["object"]["spec"] {
        return Ok(respond(true, None, Vec::new()));
    }
    let object: serde_yaml::Value = match serde_yaml::to_value(&request["object"]) {
        Ok(object) => object,
        Err(err) => {
            return Ok(respond(
                false,
                Some(format!("unreadable object: {err}")),
                Vec::new(),
            ));
        }
    };
    let problems = validator.validate(&object);
    let line = |p: &crate::profile::validate::Problem| {
        if p.path.is_empty() {
            p.message.clone()
        } else {
            format!("{}: {}", p.path, p.message)
        }
    };
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(line)
        .collect();
    let warnings: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(line)
        .collect();
    let name = request["name"]
        .as_str()
        .or(request["object"]["metadata"]["name"].as_str())
        .unwrap_or_default();
    if errors.is_empty() {
        Ok(respond(true, None, warnings))
    } else {
        let message = format!("{kind} {name:?} is invalid: {}", errors.join("; "));
        Ok(respond(false, Some(message), warnings))
    }
}

/// The webhook's counters (/metrics).
#[derive(Default)]
pub struct Counters {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub bad_requests: AtomicU64,
    pub connections_refused: AtomicU64,
    pub tls_failures: AtomicU64,
}

impl Counters {
    fn render(&self) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE syscribe_webhook_reviews_total counter\n\
             syscribe_webhook_reviews_total{{allowed=\"true\"}} {}\n\
             syscribe_webhook_reviews_total{{allowed=\"false\"}} {}\n\
             # TYPE syscribe_webhook_bad_requests_total counter\n\
             syscribe_webhook_bad_requests_total {}\n\
             # TYPE syscribe_webhook_connections_refused_total counter\n\
             syscribe_webhook_connections_refused_total {}\n\
             # TYPE syscribe_webhook_tls_failures_total counter\n\
             syscribe_webhook_tls_failures_total {}\n",
            c(&self.allowed),
            c(&self.denied),
            c(&self.bad_requests),
            c(&self.connections_refused),
            c(&self.tls_failures),
        )
    }
}

/// The serving certificate, re-read when its files change.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    acceptor: TlsAcceptor,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, WebhookError> {
    let tls_err = |path: &Path, reason: String| WebhookError::Tls {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(tls_err(cert, "no certificate in this file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            tls_err(
                cert,
                format!("the certificate and key do not go together: {e}"),
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Certificate {
    fn load(cert: &Path, key: &Path) -> Result<Self, WebhookError> {
        Ok(Self {
            stamp: (modified(cert), modified(key)),
            acceptor: acceptor(cert, key)?,
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The acceptor for a new connection: the renewed certificate once both files changed
    /// and read well; the old one meanwhile.
    fn current(&mut self) -> TlsAcceptor {
        let stamp = (modified(&self.cert), modified(&self.key));
        if stamp != self.stamp {
            match acceptor(&self.cert, &self.key) {
                Ok(acceptor) => {
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    self.acceptor = acceptor;
                    self.stamp = stamp;
                }
                // Half-written (cert-manager writes both): tried again next connection.
                Err(err) => tracing::warn!(error = %err, "keeping the previous certificate"),
            }
        }
        self.acceptor.clone()
    }
}

pub async fn run(args: WebhookArgs) -> Result<(), WebhookError> {
    let validator = match &args.selinux_policy {
        Some(dir) => {
            Validator::with_selinux_policy(SelinuxPolicy::load(dir).map_err(|source| {
                WebhookError::Policy {
                    path: dir.clone(),
                    source,
                }
            })?)
        }
        None => Validator::default(),
    };
    let mut certificate = Certificate::load(&args.cert, &args.key)?;
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|source| WebhookError::Listen {
            addr: args.addr,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| WebhookError::Listen {
            addr: args.addr,
            source,
        })?;
    // The actual address (a test binds port 0).
    eprintln!("syscribe: webhook listening on https://{local}/validate");
    let shared = Arc::new(Shared {
        validator: Arc::new(Mutex::new(validator)),
        counters: Counters::default(),
        bodies: tokio::sync::Semaphore::new(BODY_BUDGET_KIB),
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_connections));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| WebhookError::Listen {
            addr: args.addr,
            source,
        })?;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %err, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared
                .counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let acceptor = certificate.current();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(REQUEST, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(tls, &shared).await,
                _ => {
                    shared.counters.tls_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "TLS handshake failed");
                }
            }
        });
    }
    Ok(())
}

/// HTTP/1.1 requests on one connection, kept alive until the client closes it or asks to.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: &Shared) {
    let counters = &shared.counters;
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // From a request's first byte on, the whole request must come within REQUEST.
        let mut deadline = (!buffer.is_empty()).then(|| tokio::time::Instant::now() + REQUEST);
        let wait = |deadline: Option<tokio::time::Instant>| {
            deadline.map_or(IDLE, |d| {
                d.saturating_duration_since(tokio::time::Instant::now())
            })
        };
        // The head, up to its blank line.
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buffer.len() > MAX_HEAD {
                counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                let _ = respond(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    b"head too large\n",
                    true,
                )
                .await;
                return;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(wait(deadline), stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => {
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + REQUEST);
                    buffer.extend_from_slice(&chunk[..n]);
                }
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            request_line.next().unwrap_or_default().to_owned(),
            request_line.next().unwrap_or_default().to_owned(),
        );
        let mut length: Option<usize> = None;
        let mut close = false;
        let mut chunked = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok(),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "transfer-encoding" => chunked = !value.eq_ignore_ascii_case("identity"),
                _ => {}
            }
        }
        buffer.drain(..head_end);
        if chunked || (method == "POST" && length.is_none()) {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = respond(
                &mut stream,
                "411 Length Required",
                "text/plain",
                b"a Content-Length is needed\n",
                true,
            )
            .await;
            return;
        }
        let length = length.unwrap_or(0);
        if length > MAX_BODY {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = respond(
                &mut stream,
                "413 Content Too Large",
                "text/plain",
                b"body too large\n",
                true,
            )
            .await;
            return;
        }
        // The body counts against the budget shared by all connections while it is held.
        let Ok(_body_permit) = shared
            .bodies
            .try_acquire_many(u32::try_from(length.div_ceil(1024)).unwrap_or(u32::MAX))
        else {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            let _ = respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                b"too many requests at once\n",
                true,
            )
            .await;
            return;
        };
        while buffer.len() < length {
            let mut chunk = vec![0u8; (length - buffer.len()).min(64 * 1024)];
            match tokio::time::timeout(wait(deadline), stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buffer.drain(..length).collect();
        let path = path.split('?').next().unwrap_or_default();
        let written = match (method.as_str(), path) {
            ("POST", "/validate") => {
                // Off the connections' thread: a large profile does not stall the others.
                let validator = shared.validator.clone();
                let answer = tokio::task::spawn_blocking(move || match validator.lock() {
                    Ok(mut validator) => review(&mut validator, &body),
                    Err(_) => Err(ReviewError::Json("the validator failed earlier".into())),
                })
                .await
                .unwrap_or_else(|_| Err(ReviewError::Json("the validator failed".into())));
                match answer {
                    Ok(answer) => {
                        let counter = if answer["response"]["allowed"] == true {
                            &counters.allowed
                        } else {
                            &counters.denied
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        let bytes = serde_json::to_vec(&answer).expect("reviews serialize");
                        respond(&mut stream, "200 OK", "application/json", &bytes, close).await
                    }
                    Err(err) => {
                        counters.bad_requests.fetch_add(1, Ordering::Relaxed);
                        let text = format!("{err}\n");
                        respond(
                            &mut stream,
                            "400 Bad Request",
                            "text/plain",
                            text.as_bytes(),
                            close,
                        )
                        .await
                    }
                }
            }
            ("GET", "/healthz" | "/readyz") => {
                respond(&mut stream, "200 OK", "text/plain", b"ok\n", close).await
            }
            ("GET", "/metrics") => {
                let text = counters.render();
                respond(
                    &mut stream,
                    "200 OK",
                    "text/plain; version=0.0.4",
                    text.as_bytes(),
                    close,
                )
                .await
            }
            _ => {
                respond(
                    &mut stream,
                    "404 Not Found",
                    "text/plain",
                    b"not found\n",
                    close,
                )
                .await
            }
        };
        if written.is_err() || close {
            return;
        }
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(operation: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "security-profiles-operator.x-k8s.io", "version": "v1", "kind": object["kind"]},
                "resource": {"group": "security-profiles-operator.x-k8s.io", "version": "v1", "resource": "seccompprofiles"},
                "name": object["metadata"]["name"], "operation": operation,
                "object": object,
            }
        }))
        .unwrap()
    }

    fn seccomp(names: &[&str], default: &str) -> Value {
        json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
               "metadata": {"name": "web", "uid": "u1", "managedFields": []},
               "spec": {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]},
               "status": {}})
    }

    #[test]
    fn a_valid_profile_is_allowed() {
        let answer = review(
            &mut Validator::default(),
            &request("CREATE", seccomp(&["read"], "SCMP_ACT_ERRNO")),
        )
        .unwrap();
        assert_eq!(
            answer,
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true}})
        );
    }

    #[test]
    fn an_invalid_profile_is_denied_with_every_problem() {
        let answer = review(
            &mut Validator::default(),
            &request("UPDATE", seccomp(&["raed", "wirte"], "SCMP_ACT_ERRNO")),
        )
        .unwrap();
        let response = &answer["response"];
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 422);
        assert_eq!(
            response["status"]["message"],
            "SeccompProfile \"web\" is invalid: \
             spec.syscalls[0].names[0]: unknown syscall \"raed\" on SCMP_ARCH_X86_64 (did you mean \"read\"?); \
             spec.syscalls[0].names[1]: unknown syscall \"wirte\" on SCMP_ARCH_X86_64 (did you mean \"write\"?)"
        );
    }

    #[test]
    fn warnings_go_back_as_admission_warnings() {
        let answer = review(
            &mut Validator::default(),
            &request("CREATE", seccomp(&["read"], "SCMP_ACT_ALLOW")),
        )
        .unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        let warnings = answer["response"]["warnings"].as_array().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("confines nothing")),
            "{warnings:?}"
        );
    }

    #[test]
    fn metadata_updates_of_an_old_invalid_profile_pass() {
        let invalid = seccomp(&["raed"], "SCMP_ACT_ERRNO");
        let mut body: Value = serde_json::from_slice(&request("UPDATE", invalid.clone())).unwrap();
        body["request"]["oldObject"] = invalid;
        let answer = review(
            &mut Validator::default(),
            &serde_json::to_vec(&body).unwrap(),
        )
        .unwrap();
        assert_eq!(
            answer["response"]["allowed"], true,
            "finalizer removal is not blocked"
        );
        body["request"]["oldObject"]["spec"]["defaultAction"] = json!("SCMP_ACT_LOG");
        let answer = review(
            &mut Validator::default(),
            &serde_json::to_vec(&body).unwrap(),
        )
        .unwrap();
        assert_eq!(
            answer["response"]["allowed"], false,
            "a spec change is judged"
        );
    }

    #[test]
    fn deletes_and_other_kinds_pass_and_garbage_is_a_bad_request() {
        let answer = review(
            &mut Validator::default(),
            &request("DELETE", seccomp(&["raed"], "SCMP_ACT_ERRNO")),
        )
        .unwrap();
        assert_eq!(answer["response"]["allowed"], true);
        let mut validator = Validator::default();
        assert!(matches!(
            review(&mut validator, b"{"),
            Err(ReviewError::Json(_))
        ));
        assert_eq!(
            review(
                &mut validator,
                br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#
            ),
            Err(ReviewError::NotAReview(
                "apiVersion \"admission.k8s.io/v1beta1\", kind \"AdmissionReview\"".into()
            ))
        );
        assert_eq!(
            review(&mut validator, br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}"#),
            Err(ReviewError::NoUid)
        );
    }
}
