//! `syscribe webhook`: a validating admission webhook (HTTPS, AdmissionReview v1) that runs
//! `syscribe validate`'s checks on SeccompProfile and SelinuxProfile creates and updates. An
//! invalid profile is refused with its problems (`spec.syscalls[0].names[1]: unknown syscall
//! "raed" … (did you mean "read"?)`; past [`MAX_ERRORS`], how many more); warnings are returned
//! as admission warnings, which kubectl prints. The certificate is re-read when its files
//! change (cert-manager renews it in place).
//!
//! It takes what anyone who reaches its port sends, so everything is bounded — connections
//! (in all and per peer, see [`slots`]), the time to each step of a request, heads, bodies, the
//! memory of a review and the size of its answer — and whatever a bound refuses, closes or
//! leaves out is counted on /metrics. HTTP/1.1 itself is hyper's; the bounds around it are
//! ours ([`Limits`], enforced per connection in [`serve`]).

mod binding;
mod bound;
mod review;
mod serve;
mod slots;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use http::{Method, StatusCode};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::profile::validate::{SelinuxPolicy, Validator};
pub use binding::{Binding, MAX_BOUND_CONTAINERS, matches, mutate};
pub use review::{MAX_VALUES, ReviewError, review};
use serve::{Conn, handshake, serve_connection};
use slots::Slots;

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
    /// Compile SELinux profiles with the CIL compiler (secilc) against this policy store's
    /// modules (e.g. /var/lib/selinux/default mounted from a node) before admitting them.
    #[arg(long, value_name = "DIR")]
    pub policy_store: Option<PathBuf>,
    /// A compilation that takes longer is stopped and the profile admitted with a warning
    /// saying so (the node compiles it again before installing). Keep it below the webhook
    /// configuration's timeoutSeconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 4)]
    pub compile_timeout: u64,
    /// Connections held at once. When all are taken, one that is not serving a request (the
    /// one that never sent a request, else the one idle longest) is closed for the new one;
    /// only when all serve requests is the new one refused. Both are counted.
    #[arg(long, default_value_t = MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Connections held at once from one IP address, with the same rule: one peer cannot
    /// take every slot. The API server is one peer (one connection per concurrent call).
    #[arg(long, default_value_t = MAX_CONNECTIONS_PER_PEER, value_parser = at_least_one)]
    pub max_connections_per_peer: usize,
    /// Serve `POST /mutate`, binding new pods' containers to the profiles of their
    /// namespace's ProfileBindings. Needs API access (the pod's ServiceAccount or a
    /// kubeconfig): ProfileBindings, the pods it bound and the profiles' metadata are
    /// watched, the profiles' `syscribe.dev/bound` finalizer and the bindings'
    /// activeWorkloads kept.
    #[arg(long)]
    pub bindings: bool,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 is needed".into()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
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
    #[error("--policy-store: {0}")]
    PolicyBase(#[from] crate::selinux::BaseError),
    #[error("--bindings: no Kubernetes API access: {0}")]
    Kube(#[source] kube::Error),
    #[error("{path}: {source}", path = .path.display())]
    Policy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Connections held at once (`--max-connections`).
pub const MAX_CONNECTIONS: usize = 256;
/// Connections held at once from one IP address (`--max-connections-per-peer`): a quarter of
/// the slots, so a single peer trickling requests cannot take them all, and still far more
/// than the API server's concurrent calls to one replica for profile writes (it is one peer).
pub const MAX_CONNECTIONS_PER_PEER: usize = 64;
/// Largest request head, blank line included (431 beyond). The API server's are < 1 KiB.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (413 beyond, told from its Content-Length before any of it is read).
/// Real profiles are tens of KiB (≈ 450 syscalls exist) and an UPDATE carries two copies;
/// what a body costs to check is bounded by [`MAX_VALUES`].
pub const MAX_BODY: usize = 1024 * 1024;
/// Request bodies held at once, all connections together, in KiB (503 beyond): bodies wait
/// here for the one review running at a time. With one review's working set (≤ ~75 MiB at
/// [`MAX_VALUES`]) and the connections', the webhook stays within its Deployment's 128 MiB.
pub const BODY_BUDGET_KIB: usize = 8 * 1024;
/// A new connection must send its first byte (the TLS ClientHello) within this: whoever dials
/// the webhook has a request to send.
pub const FIRST_BYTE: Duration = Duration::from_secs(2);
/// The TLS handshake must end within this after the connection is accepted.
pub const HANDSHAKE: Duration = Duration::from_secs(5);
/// A request's head must come whole within this from its first byte (a client trickling a
/// head cannot hold a slot).
pub const HEAD: Duration = Duration::from_secs(5);
/// A request must come whole, body included, within this from its first byte.
pub const REQUEST: Duration = Duration::from_secs(10);
/// A response must be taken by the client within this (one that never reads cannot hold a
/// slot and the response's memory).
pub const WRITE: Duration = Duration::from_secs(10);
/// A kept-alive client that sends nothing for this long is closed (sooner if its slot is
/// needed).
pub const IDLE: Duration = Duration::from_secs(30);
/// After refusing a request (413, 431…), what the client still sends is read and dropped for
/// at most this, so that it reads the refusal instead of a connection reset.
pub const LINGER: Duration = Duration::from_secs(1);
/// Errors listed in a denial; it then says how many more there are.
pub const MAX_ERRORS: usize = 50;
/// Warnings returned; one more warning then says how many more there are.
pub const MAX_WARNINGS: usize = 10;
/// Longest problem line (and profile name) in an answer, in bytes; a longer one is cut and
/// says how many bytes were cut.
pub const MAX_LINE: usize = 400;
/// The answer to any review is at most this long (what the bounds above make it).
pub const MAX_RESPONSE: usize = 64 * 1024;
/// Longest request.uid echoed (the API server's are 36 characters).
pub const MAX_UID: usize = 128;

/// The webhook's bounds: the constants above by default; `--max-connections` and
/// `--max-connections-per-peer` set the first two (a test shortens the deadlines).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections held at once ([`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Connections held at once from one IP address ([`MAX_CONNECTIONS_PER_PEER`]).
    pub max_connections_per_peer: usize,
    /// Largest request head, blank line included ([`MAX_HEAD`]).
    pub max_head: usize,
    /// Largest request body ([`MAX_BODY`]).
    pub max_body: usize,
    /// Request bodies held at once, in KiB ([`BODY_BUDGET_KIB`]).
    pub body_budget_kib: usize,
    pub deadlines: Deadlines,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_head: MAX_HEAD,
            max_body: MAX_BODY,
            body_budget_kib: BODY_BUDGET_KIB,
            deadlines: Deadlines::default(),
        }
    }
}

/// The time each step of a connection may take ([`FIRST_BYTE`], [`HANDSHAKE`], [`HEAD`],
/// [`REQUEST`], [`WRITE`], [`IDLE`], [`LINGER`]).
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub first_byte: Duration,
    pub handshake: Duration,
    pub head: Duration,
    pub request: Duration,
    pub write: Duration,
    pub idle: Duration,
    pub linger: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            first_byte: FIRST_BYTE,
            handshake: HANDSHAKE,
            head: HEAD,
            request: REQUEST,
            write: WRITE,
            idle: IDLE,
            linger: LINGER,
        }
    }
}

/// What every connection shares.
struct Shared {
    limits: Limits,
    validator: Arc<Mutex<Validator>>,
    counters: Counters,
    /// KiB of request bodies that may still be read.
    bodies: tokio::sync::Semaphore,
    slots: Mutex<Slots>,
    /// With `--bindings`: what `/mutate` binds with.
    bindings: Option<bound::BindingCache>,
}

/// Why a connection was closed by the webhook (a label on /metrics).
#[derive(Debug, Clone, Copy)]
enum Closed {
    /// To make room for a new connection (see [`slots`]).
    Evicted,
    /// No first byte within [`FIRST_BYTE`].
    FirstByte,
    /// No TLS handshake within [`HANDSHAKE`].
    Handshake,
    /// No whole head within [`HEAD`].
    Head,
    /// No whole request within [`REQUEST`].
    Request,
    /// The response not taken within [`WRITE`].
    Write,
    /// Idle for [`IDLE`] between requests.
    Idle,
}

impl Closed {
    const ALL: [Closed; 7] = [
        Closed::Evicted,
        Closed::FirstByte,
        Closed::Handshake,
        Closed::Head,
        Closed::Request,
        Closed::Write,
        Closed::Idle,
    ];
    fn label(self) -> &'static str {
        match self {
            Closed::Evicted => "evicted",
            Closed::FirstByte => "first_byte_timeout",
            Closed::Handshake => "handshake_timeout",
            Closed::Head => "head_timeout",
            Closed::Request => "request_timeout",
            Closed::Write => "write_timeout",
            Closed::Idle => "idle",
        }
    }
}

/// Why a request was refused before it was read whole (a label on /metrics).
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// 431: head over [`MAX_HEAD`].
    HeadTooLarge,
    /// 413: body over [`MAX_BODY`].
    BodyTooLarge,
    /// 411: no Content-Length (or chunked).
    LengthRequired,
    /// 503: the [`BODY_BUDGET_KIB`] is held by other requests.
    Busy,
}

impl Refused {
    const ALL: [Refused; 4] = [
        Refused::HeadTooLarge,
        Refused::BodyTooLarge,
        Refused::LengthRequired,
        Refused::Busy,
    ];
    fn label(self) -> &'static str {
        match self {
            Refused::HeadTooLarge => "head_too_large",
            Refused::BodyTooLarge => "body_too_large",
            Refused::LengthRequired => "length_required",
            Refused::Busy => "busy",
        }
    }
    /// The status and its reason phrase (RFC 9110's: 413 is "Content Too Large" now).
    fn status(self) -> (StatusCode, &'static str) {
        match self {
            Refused::HeadTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Request Header Fields Too Large",
            ),
            Refused::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Content Too Large"),
            Refused::LengthRequired => (StatusCode::LENGTH_REQUIRED, "Length Required"),
            Refused::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        }
    }
}

/// The webhook's counters (/metrics).
#[derive(Default)]
pub struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    /// Bodies that are not an AdmissionReview (400).
    bad_requests: AtomicU64,
    /// Problems left out of answers (said in them as "and N more").
    problems_omitted: AtomicU64,
    refused_full: AtomicU64,
    refused_peer: AtomicU64,
    tls_failures: AtomicU64,
    closed: [AtomicU64; Closed::ALL.len()],
    refused: [AtomicU64; Refused::ALL.len()],
}

impl Counters {
    fn close(&self, why: Closed) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }
    fn refuse(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut text = format!(
            "# TYPE syscribe_webhook_reviews_total counter\n\
             syscribe_webhook_reviews_total{{allowed=\"true\"}} {}\n\
             syscribe_webhook_reviews_total{{allowed=\"false\"}} {}\n\
             # TYPE syscribe_webhook_bad_requests_total counter\n\
             syscribe_webhook_bad_requests_total {}\n\
             # TYPE syscribe_webhook_problems_omitted_total counter\n\
             syscribe_webhook_problems_omitted_total {}\n\
             # TYPE syscribe_webhook_tls_failures_total counter\n\
             syscribe_webhook_tls_failures_total {}\n\
             # TYPE syscribe_webhook_connections_refused_total counter\n\
             syscribe_webhook_connections_refused_total{{reason=\"full\"}} {}\n\
             syscribe_webhook_connections_refused_total{{reason=\"peer_full\"}} {}\n\
             # TYPE syscribe_webhook_connections_closed_total counter\n",
            c(&self.allowed),
            c(&self.denied),
            c(&self.bad_requests),
            c(&self.problems_omitted),
            c(&self.tls_failures),
            c(&self.refused_full),
            c(&self.refused_peer),
        );
        for why in Closed::ALL {
            text.push_str(&format!(
                "syscribe_webhook_connections_closed_total{{reason=\"{}\"}} {}\n",
                why.label(),
                c(&self.closed[why as usize])
            ));
        }
        text.push_str("# TYPE syscribe_webhook_requests_refused_total counter\n");
        for why in Refused::ALL {
            text.push_str(&format!(
                "syscribe_webhook_requests_refused_total{{reason=\"{}\"}} {}\n",
                why.label(),
                c(&self.refused[why as usize])
            ));
        }
        text
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
    let validator = match &args.policy_store {
        Some(store) => {
            let base = crate::selinux::PolicyBase::load(store)?
                .with_timeout(std::time::Duration::from_secs(args.compile_timeout));
            eprintln!(
                "syscribe: compiling SELinux profiles against {}",
                base.describe()
            );
            validator.with_compiler(Arc::new(base))
        }
        None => validator,
    };
    let mut certificate = Certificate::load(&args.cert, &args.key)?;
    let bindings = if args.bindings {
        let client = kube::Client::try_default()
            .await
            .map_err(WebhookError::Kube)?;
        Some(bound::start(client))
    } else {
        None
    };
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
    let limits = Limits {
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        ..Limits::default()
    };
    let shared = Arc::new(Shared::new(limits, validator, bindings));
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
        let Some(conn) = Conn::admit(&shared, peer) else {
            drop(stream);
            continue;
        };
        let acceptor = certificate.current();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some(tls) = handshake(&conn, &shared, &acceptor, stream).await else {
                tracing::debug!(%peer, "no TLS connection");
                return;
            };
            serve_connection(tls, &shared, &conn).await;
        });
    }
    Ok(())
}

impl Shared {
    fn new(limits: Limits, validator: Validator, bindings: Option<bound::BindingCache>) -> Self {
        Self {
            limits,
            validator: Arc::new(Mutex::new(validator)),
            counters: Counters::default(),
            bodies: tokio::sync::Semaphore::new(limits.body_budget_kib),
            slots: Mutex::new(Slots::new(
                limits.max_connections,
                limits.max_connections_per_peer,
            )),
            bindings,
        }
    }

    /// The answer to a request read whole: its status, content type and body.
    async fn route(
        &self,
        method: &Method,
        path: &str,
        body: Vec<u8>,
    ) -> (StatusCode, &'static str, Vec<u8>) {
        match (method, path) {
            (&Method::POST, "/validate") => {
                // Off the connections' thread: a large profile does not stall the others.
                // One at a time (the validator's lock): one review's working set is the
                // memory bound.
                let validator = self.validator.clone();
                let answer = tokio::task::spawn_blocking(move || match validator.lock() {
                    Ok(mut validator) => review(&mut validator, &body),
                    Err(_) => Err(ReviewError::Json("the validator failed earlier".into())),
                })
                .await
                .unwrap_or_else(|_| Err(ReviewError::Json("the validator failed".into())));
                answered(&self.counters, answer)
            }
            (&Method::POST, "/mutate") => mutate_route(self, body).await,
            (&Method::GET, "/readyz") if !self.bindings_ready() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"the ProfileBinding caches are not listed yet\n".to_vec(),
            ),
            (&Method::GET, "/healthz" | "/readyz") => {
                (StatusCode::OK, "text/plain", b"ok\n".to_vec())
            }
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.counters.render().into_bytes(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }

    /// Without `--bindings`, always; with it, once its caches are listed.
    fn bindings_ready(&self) -> bool {
        self.bindings
            .as_ref()
            .is_none_or(|b| b.ready.load(Ordering::Acquire))
    }
}

/// `POST /mutate`: 404 without `--bindings`, 503 until its caches are listed (the API
/// server then refuses the pod, failurePolicy Fail: an empty cache would let it through
/// unbound), else the review [`binding::mutate`] answers.
async fn mutate_route(shared: &Shared, body: Vec<u8>) -> (StatusCode, &'static str, Vec<u8>) {
    let counters = &shared.counters;
    let Some(cache) = &shared.bindings else {
        return (
            StatusCode::NOT_FOUND,
            "text/plain",
            b"pod binding is not enabled (syscribe webhook --bindings)\n".to_vec(),
        );
    };
    if !shared.bindings_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"the ProfileBinding caches are not listed yet; try again\n".to_vec(),
        );
    }
    let all = cache.bindings.state();
    let answer = tokio::task::spawn_blocking(move || {
        binding::mutate(&body, |namespace| {
            all.iter()
                .filter(|b| b.metadata.namespace.as_deref() == Some(namespace))
                .filter(|b| b.metadata.deletion_timestamp.is_none())
                .map(|b| Binding {
                    name: b.metadata.name.as_deref().unwrap_or_default(),
                    spec: &b.spec,
                })
                .collect()
        })
    })
    .await
    .unwrap_or_else(|_| Err(ReviewError::Json("the binder failed".into())));
    answered(counters, answer.map(|answer| (answer, 0)))
}

/// The HTTP answer to a review (validating or mutating), counted: allowed or denied, the
/// problems it left out, or a bad request.
fn answered(
    counters: &Counters,
    answer: Result<(serde_json::Value, u64), ReviewError>,
) -> (StatusCode, &'static str, Vec<u8>) {
    match answer {
        Ok((answer, omitted)) => {
            let counter = if answer["response"]["allowed"] == true {
                &counters.allowed
            } else {
                &counters.denied
            };
            counter.fetch_add(1, Ordering::Relaxed);
            counters
                .problems_omitted
                .fetch_add(omitted, Ordering::Relaxed);
            let bytes = serde_json::to_vec(&answer).expect("reviews serialize");
            (StatusCode::OK, "application/json", bytes)
        }
        Err(err) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("{err}\n").into_bytes(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
