//! The clients and the backend of the sample load: curl (a real client) on the host, and for
//! the proxy a small HTTP/1.1 backend with keep-alive.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// One response as curl saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub path: String,
    pub status: u16,
    pub body: Vec<u8>,
    /// Connections curl opened for this request: 1 for a new one, 0 when it reused the
    /// previous request's (keep-alive).
    pub connects: u32,
}

/// A port on the host's loopback that nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port on 127.0.0.1")
        .port()
}

/// Waits (up to `timeout`) until something accepts a TCP connection on `port`, as a kubelet's
/// `tcpSocket` probe does.
pub fn wait_listening(port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() > deadline => {
                return Err(format!(
                    "nothing listened on 127.0.0.1:{port} within {timeout:?}: {err}"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// GETs `paths` from `127.0.0.1:port` in order with one curl, which keeps the connection
/// alive between them and asks for compressed bodies as browsers do (`--compressed`; the
/// bodies returned are decompressed). `scratch` holds the bodies meanwhile.
pub fn get(
    port: u16,
    paths: &[&str],
    scratch: &Path,
    max_time: Duration,
) -> Result<Vec<Response>, String> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--compressed", "--noproxy", "*", "--max-time"])
        .arg(max_time.as_secs_f64().to_string())
        .args(["-w", "%{http_code} %{num_connects}\\n"]);
    for (i, path) in paths.iter().enumerate() {
        curl.arg("-o")
            .arg(scratch.join(i.to_string()))
            .arg(format!("http://127.0.0.1:{port}{path}"));
    }
    let out = curl.output().map_err(|e| format!("spawn curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "curl {paths:?} failed ({}): {} (what it wrote: {text:?})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != paths.len() {
        return Err(format!(
            "curl wrote {} results for {} requests: {text:?}",
            lines.len(),
            paths.len()
        ));
    }
    paths
        .iter()
        .zip(lines)
        .enumerate()
        .map(|(i, (path, line))| {
            let parse = || -> Option<(u16, u32)> {
                let (status, connects) = line.split_once(' ')?;
                Some((status.parse().ok()?, connects.parse().ok()?))
            };
            let (status, connects) =
                parse().ok_or_else(|| format!("curl's result line {line:?} for {path}"))?;
            let file = scratch.join(i.to_string());
            // A response without a body leaves no file.
            let body = std::fs::read(&file).unwrap_or_default();
            let _ = std::fs::remove_file(&file);
            Ok(Response {
                path: (*path).to_owned(),
                status,
                body,
                connects,
            })
        })
        .collect()
}

/// A backend for the proxy on the host's loopback: `/app/hello` and `/app/big.bin` answer 200,
/// anything else 404; requests on one connection are answered in turn (keep-alive). Stopped on
/// drop.
pub struct Backend {
    pub port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

/// What the backend answers for `path`: status and body.
pub fn backend_answer(path: &str) -> (u16, Vec<u8>) {
    match path {
        "/app/hello" => (200, b"hello from the backend behind the proxy\n".to_vec()),
        "/app/big.bin" => (200, super::big_body(0x5eed_0002)),
        _ => (404, b"the backend has no such thing\n".to_vec()),
    }
}

impl Backend {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the backend");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve_connection(stream));
                }
            }
        });
        Self {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the acceptor, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The most a request's head may take; a longer one ends the connection.
const MAX_HEAD: usize = 16 * 1024;

/// Answers GET requests on one connection until the peer closes it (or 30 s of silence).
fn serve_connection(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buffer = Vec::new();
    loop {
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buffer.len() > MAX_HEAD {
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let (status, body) = backend_answer(&path);
        let reason = if status == 200 { "OK" } else { "Not Found" };
        let header = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if stream.write_all(header.as_bytes()).is_err() || stream.write_all(&body).is_err() {
            return;
        }
    }
}
