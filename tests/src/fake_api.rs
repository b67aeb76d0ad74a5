//! A thin stand-in for the Kubernetes API server, for the one test that needs a real
//! `syscribe daemon` process (killed and started again): plain HTTP on 127.0.0.1, lists of
//! the objects the test added, watch streams the test pushes events into, and every write
//! recorded (and answered with the object as it now is). Everything else about the API is
//! tested with kube's tower-test mock, in process.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::TempDir;

/// A write the daemon made.
#[derive(Debug, Clone)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    /// Collection path (`/api/v1/pods`) → its objects.
    lists: BTreeMap<String, Vec<Value>>,
    /// Object path → the object after the writes to it.
    stored: BTreeMap<String, Value>,
    /// Open watches: collection path and the connection.
    watches: Vec<(String, TcpStream)>,
    writes: Vec<Write>,
}

pub struct FakeApi {
    port: u16,
    state: Arc<Mutex<State>>,
}

/// Merge patch (RFC 7386): objects merged, null removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl FakeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self { port, state }
    }

    /// Adds `object` to the collection listed at `collection` (e.g. `/api/v1/pods`).
    pub fn add(&self, collection: &str, object: Value) {
        let mut state = self.state.lock().unwrap();
        state
            .lists
            .entry(collection.to_owned())
            .or_default()
            .push(object);
    }

    /// A kubeconfig that points kube at this server.
    pub fn kubeconfig(&self, dir: &TempDir) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{}\"}}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\n\
             current-context: fake\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) to every open watch of the
    /// collection; returns how many watches got it.
    pub fn push(&self, collection: &str, kind: &str, object: &Value) -> usize {
        let line = format!("{}\n", json!({"type": kind, "object": object}));
        let chunk = format!("{:x}\r\n{line}\r\n", line.len());
        let mut state = self.state.lock().unwrap();
        let mut sent = 0;
        state.watches.retain_mut(|(path, stream)| {
            if path != collection {
                return true;
            }
            let ok = stream.write_all(chunk.as_bytes()).is_ok();
            sent += usize::from(ok);
            ok
        });
        sent
    }

    /// Open watches of a collection.
    pub fn watching(&self, collection: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .watches
            .iter()
            .filter(|(p, _)| p == collection)
            .count()
    }

    /// Waits (≤ `limit`) for a write after the first `after` writes that `matches`.
    pub fn wait_for(
        &self,
        after: usize,
        limit: Duration,
        matches: impl Fn(&Write) -> bool,
    ) -> Option<Write> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            {
                let state = self.state.lock().unwrap();
                if let Some(w) = state.writes.iter().skip(after).find(|w| matches(w)) {
                    return Some(w.clone());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn writes(&self) -> Vec<Write> {
        self.state.lock().unwrap().writes.clone()
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// HTTP/1.1 requests of one connection (kube keeps connections alive).
fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if method == "GET" && query.split('&').any(|p| p == "watch=true") {
            // A watch: headers now, events when the test pushes them; the connection is the
            // watch's until the daemon closes it.
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            state
                .lock()
                .unwrap()
                .watches
                .push((path.to_owned(), stream.try_clone().unwrap()));
            let mut sink = [0u8; 256];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        let answer = {
            let mut state = state.lock().unwrap();
            answer(&mut state, &method, path, &body)
        };
        if respond(&mut stream, "200 OK", &answer).is_err() {
            return;
        }
    }
}

fn answer(state: &mut State, method: &str, path: &str, body: &[u8]) -> Value {
    if method == "GET" {
        let items = state.lists.get(path).cloned().unwrap_or_default();
        return json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items});
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    state.writes.push(Write {
        method: method.to_owned(),
        path: path.to_owned(),
        body: body.clone(),
    });
    if method == "POST" {
        let mut created = body;
        created["metadata"]["name"] = json!("created");
        return created;
    }
    // PATCH: the object (or its status) as it now is.
    let object_path = path.strip_suffix("/status").unwrap_or(path).to_owned();
    let name = object_path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let current = state.stored.get(&object_path).cloned().unwrap_or_else(|| {
        state
            .lists
            .values()
            .flatten()
            .find(|o| o["metadata"]["name"] == name.as_str())
            .cloned()
            .unwrap_or_else(|| json!({}))
    });
    let mut object = current;
    merge(&mut object, &body);
    state.stored.insert(object_path, object.clone());
    object
}
