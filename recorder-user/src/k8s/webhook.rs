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
//! leaves out is counted on /metrics.

mod binding;
mod bound;
mod review;
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

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use thiserror::Error;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::{Instant, timeout, timeout_at},
};
use tokio_rustls::TlsAcceptor;

use crate::profile::validate::{SelinuxPolicy, Validator};
pub use binding::{Binding, MAX_BOUND_CONTAINERS, matches, mutate};
pub use review::{MAX_VALUES, ReviewError, review};
use slots::{Phase, Refusal, Slots};

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

/// The deadlines, from the constants above (a test shortens them).
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    first_byte: Duration,
    handshake: Duration,
    head: Duration,
    request: Duration,
    write: Duration,
    idle: Duration,
    linger: Duration,
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
    deadlines: Deadlines,
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
    fn status(self) -> &'static str {
        match self {
            Refused::HeadTooLarge => "431 Request Header Fields Too Large",
            Refused::BodyTooLarge => "413 Content Too Large",
            Refused::LengthRequired => "411 Length Required",
            Refused::Busy => "503 Service Unavailable",
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
    let shared = Arc::new(Shared {
        deadlines: Deadlines::default(),
        validator: Arc::new(Mutex::new(validator)),
        counters: Counters::default(),
        bodies: tokio::sync::Semaphore::new(BODY_BUDGET_KIB),
        slots: Mutex::new(Slots::new(
            args.max_connections,
            args.max_connections_per_peer,
        )),
        bindings,
    });
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

/// One connection's slot; given back when dropped.
struct Conn {
    shared: Arc<Shared>,
    id: u64,
    /// Notified when the slot is needed for another connection.
    close: Arc<Notify>,
}

impl Conn {
    /// A slot for a connection from `peer`, or none (refused and counted).
    fn admit(shared: &Arc<Shared>, peer: SocketAddr) -> Option<Conn> {
        let admitted = shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(peer.ip(), std::time::Instant::now());
        let counters = &shared.counters;
        match admitted {
            Ok(admitted) => {
                if admitted.evicted {
                    counters.close(Closed::Evicted);
                }
                Some(Conn {
                    shared: shared.clone(),
                    id: admitted.id,
                    close: admitted.close,
                })
            }
            Err(refusal) => {
                let counter = match refusal {
                    Refusal::Full => &counters.refused_full,
                    Refusal::Peer => &counters.refused_peer,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, ?refusal, "connection refused");
                None
            }
        }
    }

    /// Enters `phase`; false if the slot was taken for another connection meanwhile.
    fn phase(&self, phase: Phase) -> bool {
        self.shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_phase(self.id, phase, std::time::Instant::now())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.id);
    }
}

/// The TLS handshake: its first byte within [`FIRST_BYTE`], all of it within [`HANDSHAKE`],
/// given up at once if the slot is needed.
async fn handshake(
    conn: &Conn,
    shared: &Shared,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let counters = &shared.counters;
    let deadline = Instant::now() + shared.deadlines.handshake;
    let steps = async {
        match timeout(shared.deadlines.first_byte, stream.peek(&mut [0u8; 1])).await {
            Err(_) => return Err(Some(Closed::FirstByte)),
            Ok(Ok(0) | Err(_)) => return Err(None),
            Ok(Ok(_)) => {}
        }
        match timeout_at(deadline, acceptor.accept(stream)).await {
            Err(_) => Err(Some(Closed::Handshake)),
            Ok(Err(_)) => {
                counters.tls_failures.fetch_add(1, Ordering::Relaxed);
                Err(None)
            }
            Ok(Ok(tls)) => Ok(tls),
        }
    };
    tokio::select! {
        // Counted when it was chosen.
        _ = conn.close.notified() => None,
        done = steps => match done {
            Ok(tls) => Some(tls),
            Err(why) => {
                if let Some(why) = why {
                    counters.close(why);
                }
                None
            }
        },
    }
}

/// What ended a read.
enum ReadEnd {
    /// The client closed, or the connection failed: nothing to say.
    Gone,
    /// The deadline passed.
    Late,
}

async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    deadline: Instant,
    into: &mut [u8],
) -> Result<usize, ReadEnd> {
    match timeout_at(deadline, stream.read(into)).await {
        Err(_) => Err(ReadEnd::Late),
        Ok(Ok(0) | Err(_)) => Err(ReadEnd::Gone),
        Ok(Ok(n)) => Ok(n),
    }
}

/// HTTP/1.1 requests on one connection, kept alive until the client closes it or asks to,
/// or a bound closes it.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    shared: &Shared,
    conn: &Conn,
) {
    let counters = &shared.counters;
    let deadlines = &shared.deadlines;
    // Only heads (and what follows them in the same reads) gather here: at most MAX_HEAD
    // plus one read.
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut served = false;
    loop {
        // Between requests: a new connection's first request comes within FIRST_BYTE, the
        // next ones within IDLE; the slot may be taken for another connection meanwhile.
        if buffer.is_empty() {
            let (wait, why) = if served {
                (deadlines.idle, Closed::Idle)
            } else {
                (deadlines.first_byte, Closed::FirstByte)
            };
            let read = tokio::select! {
                _ = conn.close.notified() => return,
                read = read_until(&mut stream, Instant::now() + wait, &mut chunk) => read,
            };
            match read {
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(ReadEnd::Late) => return counters.close(why),
                Err(ReadEnd::Gone) => return,
            }
        }
        if !conn.phase(Phase::Busy) {
            return; // its slot went to another connection just now
        }
        let first_byte = Instant::now();
        // The head, up to its blank line.
        let mut scanned = 0;
        let head_end = loop {
            if let Some(at) = buffer[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
                break scanned + at + 4;
            }
            scanned = buffer.len().saturating_sub(3);
            if buffer.len() >= MAX_HEAD {
                break usize::MAX;
            }
            match read_until(&mut stream, first_byte + deadlines.head, &mut chunk).await {
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(ReadEnd::Late) => return counters.close(Closed::Head),
                Err(ReadEnd::Gone) => return,
            }
        };
        if head_end > MAX_HEAD {
            let detail = format!("the request head is over {} KiB\n", MAX_HEAD / 1024);
            return refuse(&mut stream, shared, Refused::HeadTooLarge, &detail).await;
        }
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let (method, path) = (
            request_line.next().unwrap_or_default().to_owned(),
            request_line.next().unwrap_or_default().to_owned(),
        );
        let mut length: Option<usize> = None;
        let mut close = false;
        let mut chunked = false;
        let mut expect_continue = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok(),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                "transfer-encoding" => chunked = !value.eq_ignore_ascii_case("identity"),
                "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        if chunked || (method == "POST" && length.is_none()) {
            let detail = "a Content-Length is needed (chunked bodies are not taken)\n";
            return refuse(&mut stream, shared, Refused::LengthRequired, detail).await;
        }
        let length = length.unwrap_or(0);
        if length > MAX_BODY {
            let detail = format!(
                "the request body ({length} bytes) is over {} KiB\n",
                MAX_BODY / 1024
            );
            return refuse(&mut stream, shared, Refused::BodyTooLarge, &detail).await;
        }
        // The body counts against the budget shared by all connections while it is held.
        let Ok(_body_permit) = shared
            .bodies
            .try_acquire_many(u32::try_from(length.div_ceil(1024)).unwrap_or(u32::MAX))
        else {
            let detail = "too many request bodies held at once; try again\n";
            return refuse(&mut stream, shared, Refused::Busy, detail).await;
        };
        if expect_continue && length > buffer.len() {
            let written = timeout(
                deadlines.write,
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
            )
            .await;
            if !matches!(written, Ok(Ok(()))) {
                return;
            }
        }
        // Exactly the body's size, never more: what the budget counts.
        let mut body: Vec<u8> = Vec::with_capacity(length);
        body.extend(buffer.drain(..length.min(buffer.len())));
        while body.len() < length {
            let want = (length - body.len()).min(chunk.len());
            match read_until(
                &mut stream,
                first_byte + deadlines.request,
                &mut chunk[..want],
            )
            .await
            {
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(ReadEnd::Late) => return counters.close(Closed::Request),
                Err(ReadEnd::Gone) => return,
            }
        }
        let path = path.split('?').next().unwrap_or_default();
        let (status, content_type, answer): (&str, &str, Vec<u8>) = match (method.as_str(), path) {
            ("POST", "/validate") => {
                // Off the connections' thread: a large profile does not stall the others.
                // One at a time (the validator's lock): one review's working set is the
                // memory bound.
                let validator = shared.validator.clone();
                let answer = tokio::task::spawn_blocking(move || match validator.lock() {
                    Ok(mut validator) => review(&mut validator, &body),
                    Err(_) => Err(ReviewError::Json("the validator failed earlier".into())),
                })
                .await
                .unwrap_or_else(|_| Err(ReviewError::Json("the validator failed".into())));
                answered(counters, answer)
            }
            ("POST", "/mutate") => mutate_route(shared, body).await,
            ("GET", "/readyz") if !shared.bindings_ready() => (
                "503 Service Unavailable",
                "text/plain",
                b"the ProfileBinding caches are not listed yet\n".to_vec(),
            ),
            ("GET", "/healthz" | "/readyz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
            ("GET", "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4",
                counters.render().into_bytes(),
            ),
            _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        };
        drop(_body_permit);
        match timeout(
            deadlines.write,
            write_response(&mut stream, status, content_type, &answer, close),
        )
        .await
        {
            Err(_) => return counters.close(Closed::Write),
            Ok(Err(_)) => return,
            Ok(Ok(())) => {}
        }
        if close {
            return;
        }
        served = true;
        conn.phase(Phase::Waiting);
    }
}

impl Shared {
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
async fn mutate_route(shared: &Shared, body: Vec<u8>) -> (&'static str, &'static str, Vec<u8>) {
    let counters = &shared.counters;
    let Some(cache) = &shared.bindings else {
        return (
            "404 Not Found",
            "text/plain",
            b"pod binding is not enabled (syscribe webhook --bindings)\n".to_vec(),
        );
    };
    if !shared.bindings_ready() {
        return (
            "503 Service Unavailable",
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
) -> (&'static str, &'static str, Vec<u8>) {
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
            ("200 OK", "application/json", bytes)
        }
        Err(err) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            (
                "400 Bad Request",
                "text/plain",
                format!("{err}\n").into_bytes(),
            )
        }
    }
}

/// Refuses a request that will not be read (its reason counted and said), then reads and
/// drops what the client still sends for [`LINGER`], so it reads the refusal rather than
/// a connection reset.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    shared: &Shared,
    why: Refused,
    detail: &str,
) {
    shared.counters.refuse(why);
    let written = timeout(
        shared.deadlines.write,
        write_response(stream, why.status(), "text/plain", detail.as_bytes(), true),
    )
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let deadline = Instant::now() + shared.deadlines.linger;
    let _ = timeout_at(deadline, stream.shutdown()).await;
    let mut sink = [0u8; 4096];
    while read_until(stream, deadline, &mut sink).await.is_ok() {}
}

async fn write_response<S: AsyncWrite + Unpin>(
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
mod tests;
