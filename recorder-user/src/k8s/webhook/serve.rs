//! One connection: its slot, its TLS handshake, and its HTTP/1.1 requests, parsed and written
//! by hyper. Around hyper, the webhook's own bounds ([`Limits`]): the connection's stream is
//! wrapped ([`Guarded`]) so that it knows where each request is — waiting for its first byte,
//! in its head, in its body, being answered, its answer being written — and a watcher closes
//! the connection when that step's deadline passes; a head gets at most `max_head` bytes from
//! the stream; a body is refused from its Content-Length before any of it is read.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, ext::ReasonPhrase, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
    sync::{Notify, watch},
    time::{Instant, timeout, timeout_at},
};
use tokio_rustls::TlsAcceptor;

use super::{
    Closed, Deadlines, Limits, Refused, Shared,
    slots::{Phase, Refusal},
};

/// One connection's slot; given back when dropped.
pub(super) struct Conn {
    shared: Arc<Shared>,
    id: u64,
    /// Notified when the slot is needed for another connection.
    close: Arc<Notify>,
}

impl Conn {
    /// A slot for a connection from `peer`, or none (refused and counted).
    pub(super) fn admit(shared: &Arc<Shared>, peer: SocketAddr) -> Option<Conn> {
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

/// The TLS handshake: its first byte within `first_byte`, all of it within `handshake`,
/// given up at once if the slot is needed.
pub(super) async fn handshake(
    conn: &Conn,
    shared: &Shared,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let counters = &shared.counters;
    let deadlines = &shared.limits.deadlines;
    let deadline = Instant::now() + deadlines.handshake;
    let steps = async {
        match timeout(deadlines.first_byte, stream.peek(&mut [0u8; 1])).await {
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

/// Where the connection's current request is; each step but answering has a deadline.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Between requests, since `since`: the first request comes within `first_byte` (whoever
    /// connects has one to send), the next ones within `idle`. The slot may give way.
    Waiting { since: Instant, served: bool },
    /// A head is coming, `read` bytes of it so far: whole within `head` from its first byte.
    Head { first_byte: Instant, read: usize },
    /// Its body is coming: whole within `request` from the head's first byte.
    Body { first_byte: Instant },
    /// The review runs (one at a time, bounded by its own limits).
    Answering,
    /// The answer is being written since `since`: taken by the client within `write`.
    Writing { since: Instant },
}

impl Stage {
    fn deadline(self, deadlines: &Deadlines) -> Option<(Instant, Closed)> {
        match self {
            Stage::Waiting {
                since,
                served: false,
            } => Some((since + deadlines.first_byte, Closed::FirstByte)),
            Stage::Waiting {
                since,
                served: true,
            } => Some((since + deadlines.idle, Closed::Idle)),
            Stage::Head { first_byte, .. } => Some((first_byte + deadlines.head, Closed::Head)),
            Stage::Body { first_byte } => Some((first_byte + deadlines.request, Closed::Request)),
            Stage::Answering => None,
            Stage::Writing { since } => Some((since + deadlines.write, Closed::Write)),
        }
    }
}

/// What the connection's stream, its requests and its watcher share.
struct Track<'a> {
    conn: &'a Conn,
    stage: watch::Sender<Stage>,
    /// The head being read reached `max_head` bytes unfinished (431, written by us: hyper
    /// never saw it whole).
    head_over: AtomicBool,
    /// A request was refused unread (411, 413, 503): the connection closes after its answer,
    /// and what the client still sends is drained for `linger`.
    refused: AtomicBool,
}

impl Track<'_> {
    fn stage(&self) -> Stage {
        *self.stage.borrow()
    }

    fn set(&self, stage: Stage) {
        self.stage.send_replace(stage);
    }

    /// hyper has parsed a head: its body comes next. False if the slot was given away (a
    /// request already buffered while the connection waited).
    fn body_next(&self) -> bool {
        let first_byte = match self.stage() {
            Stage::Head { first_byte, .. } => first_byte,
            _ => {
                if !self.conn.phase(Phase::Busy) {
                    return false;
                }
                Instant::now()
            }
        };
        self.set(Stage::Body { first_byte });
        true
    }
}

/// The connection's stream as hyper reads and writes it, telling [`Track`] where the request
/// is: a first byte after waiting starts a head (and takes the slot out of those that may give
/// way); while in a head, reads stop at `max_head` bytes; a flush after the answer was handed
/// to hyper ends the request (answers are far smaller than hyper's write buffer, so it writes
/// each whole before flushing).
struct Guarded<'a, S> {
    inner: S,
    track: &'a Track<'a>,
    max_head: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let stage = this.track.stage();
        let read = match stage {
            Stage::Waiting { .. } => 0,
            Stage::Head { read, .. } => read,
            _ => return Pin::new(&mut this.inner).poll_read(cx, buf),
        };
        let room = this.max_head.saturating_sub(read);
        if room == 0 {
            // hyper wants more of a head that already has max_head bytes.
            this.track.head_over.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other("request head over the limit")));
        }
        let mut scratch = [0u8; 4096];
        let want = room.min(scratch.len()).min(buf.remaining());
        let mut part = ReadBuf::new(&mut scratch[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        buf.put_slice(part.filled());
        if n > 0 {
            let first_byte = match stage {
                Stage::Head { first_byte, .. } => first_byte,
                _ => {
                    if !this.track.conn.phase(Phase::Busy) {
                        // Its slot went to another connection just now.
                        return Poll::Ready(Err(io::Error::other("slot given away")));
                    }
                    Instant::now()
                }
            };
            this.track.set(Stage::Head {
                first_byte,
                read: read + n,
            });
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        if let Stage::Writing { .. } = this.track.stage() {
            this.track.conn.phase(Phase::Waiting);
            this.track.set(Stage::Waiting {
                since: Instant::now(),
                served: true,
            });
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The step whose deadline passed first.
async fn overdue(stage: &watch::Sender<Stage>, deadlines: &Deadlines) -> Closed {
    let mut watched = stage.subscribe();
    loop {
        let current = *watched.borrow_and_update();
        let Some((at, why)) = current.deadline(deadlines) else {
            // The sender lives as long as this future.
            let _ = watched.changed().await;
            continue;
        };
        tokio::select! {
            biased;
            _ = watched.changed() => {}
            () = tokio::time::sleep_until(at) => return why,
        }
    }
}

/// hyper's HTTP/1.1 for one connection. Its own head limits stay behind ours (the stream gives
/// a head `max_head` bytes at most): `max_header_size` one byte over only catches a head that
/// came pipelined behind the previous request, read while that one's body was; its own header
/// read timeout is off (ours count from a head's first byte, not from the previous answer).
fn http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .half_close(false)
        .max_header_size(limits.max_head + 1)
        .header_read_timeout(None);
    builder
}

/// HTTP/1.1 requests on one connection, kept alive until the client closes it or asks to,
/// or a bound closes it.
pub(super) async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    shared: &Shared,
    conn: &Conn,
) {
    let limits = &shared.limits;
    let counters = &shared.counters;
    let track = Track {
        conn,
        stage: watch::Sender::new(Stage::Waiting {
            since: Instant::now(),
            served: false,
        }),
        head_over: AtomicBool::new(false),
        refused: AtomicBool::new(false),
    };
    let mut io = Guarded {
        inner: stream,
        track: &track,
        max_head: limits.max_head,
    };
    let ended = {
        let service = service_fn(|request: Request<Incoming>| {
            let started = track.body_next();
            let track = &track;
            async move {
                if !started {
                    return Err(io::Error::other("slot given away"));
                }
                answer(request, shared, track).await
            }
        });
        let http = http1(limits).serve_connection(TokioIo::new(&mut io), service);
        tokio::select! {
            // Counted when it was chosen.
            _ = conn.close.notified() => return,
            why = overdue(&track.stage, &limits.deadlines) => return counters.close(why),
            ended = http => ended,
        }
    };
    if track.head_over.load(Ordering::Relaxed) {
        counters.refuse(Refused::HeadTooLarge);
        let detail = format!("the request head is over {} KiB\n", limits.max_head / 1024);
        let written = timeout(
            limits.deadlines.write,
            write_refusal(&mut io.inner, Refused::HeadTooLarge, &detail),
        )
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    } else if let Err(err) = ended {
        // hyper's own 431 (too many header lines, or a pipelined head over the limit).
        if err.is_parse_too_large() {
            counters.refuse(Refused::HeadTooLarge);
        }
        tracing::debug!(error = %err, "connection ended");
        return;
    } else if !track.refused.load(Ordering::Relaxed) {
        return;
    }
    linger(&mut io.inner, &limits.deadlines).await;
}

/// Answers one request whose head hyper parsed: refused from its head alone when its body
/// cannot be taken, else its body read (exactly its Content-Length, counted against the
/// shared budget while held) and routed.
async fn answer(
    request: Request<Incoming>,
    shared: &Shared,
    track: &Track<'_>,
) -> io::Result<Response<Full<Bytes>>> {
    let limits = &shared.limits;
    let (head, body) = request.into_parts();
    let chunked = head.headers.contains_key(header::TRANSFER_ENCODING);
    let length = head
        .headers
        .contains_key(header::CONTENT_LENGTH)
        .then(|| http_body::Body::size_hint(&body).exact())
        .flatten();
    if chunked || (head.method == Method::POST && length.is_none()) {
        let detail = "a Content-Length is needed (chunked bodies are not taken)\n";
        return Ok(refuse(
            shared,
            track,
            Refused::LengthRequired,
            detail.into(),
        ));
    }
    let length = usize::try_from(length.unwrap_or(0)).unwrap_or(usize::MAX);
    if length > limits.max_body {
        let detail = format!(
            "the request body ({length} bytes) is over {} KiB\n",
            limits.max_body / 1024
        );
        return Ok(refuse(shared, track, Refused::BodyTooLarge, detail));
    }
    // The body counts against the budget shared by all connections while it is held.
    let Ok(permit) = shared
        .bodies
        .try_acquire_many(u32::try_from(length.div_ceil(1024)).unwrap_or(u32::MAX))
    else {
        let detail = "too many request bodies held at once; try again\n";
        return Ok(refuse(shared, track, Refused::Busy, detail.into()));
    };
    let body = read_body(body, length).await?;
    track.set(Stage::Answering);
    let (status, content_type, answer) = shared.route(&head.method, head.uri.path(), body).await;
    drop(permit);
    track.set(Stage::Writing {
        since: Instant::now(),
    });
    Ok(response(status, content_type, answer))
}

/// Exactly the body's size, never more: what the budget counts (hyper ends the body at its
/// Content-Length).
async fn read_body(mut body: Incoming, length: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(length);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > length {
                return Err(io::Error::other("a body longer than its Content-Length"));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Refuses a request that will not be read (its reason counted and said); the connection
/// closes after the answer.
fn refuse(
    shared: &Shared,
    track: &Track<'_>,
    why: Refused,
    detail: String,
) -> Response<Full<Bytes>> {
    shared.counters.refuse(why);
    track.refused.store(true, Ordering::Relaxed);
    let (status, reason) = why.status();
    let mut response = response(status, "text/plain", detail.into_bytes());
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
        .extensions_mut()
        .insert(ReasonPhrase::from_static(reason.as_bytes()));
    track.set(Stage::Writing {
        since: Instant::now(),
    });
    response
}

/// The 431 for a head hyper never had whole, so never answered: a fixed answer, written as
/// the ones hyper writes are.
async fn write_refusal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    why: Refused,
    detail: &str,
) -> io::Result<()> {
    let (status, reason) = why.status();
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        detail.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(detail.as_bytes()).await?;
    stream.flush().await
}

/// After a refusal: the write side closed, what the client still sends is read and dropped
/// for `linger`, so that it reads the refusal rather than a connection reset.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, deadlines: &Deadlines) {
    let deadline = Instant::now() + deadlines.linger;
    let _ = timeout_at(deadline, stream.shutdown()).await;
    let mut sink = [0u8; 4096];
    while let Ok(Ok(1..)) = timeout_at(deadline, stream.read(&mut sink)).await {}
}
