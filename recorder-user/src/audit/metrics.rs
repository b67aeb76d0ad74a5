//! Prometheus text for the enricher, with the upstream operator's counter names
//! (`security_profiles_operator_{seccomp,selinux,apparmor}_profile_audit_total`), plus
//! syscribe's own counters; served on `/metrics` beside `/healthz` and `/readyz`.
//!
//! Series are bounded ([`Metrics::MAX_SERIES`]); denials beyond it are counted in
//! `syscribe_enricher_series_overflow_total` instead of growing the map.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::enrich::Enriched;

const PREFIX: &str = "security_profiles_operator";

/// A counter family: metric name, label names, and counts by label values.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: HashMap<Vec<String>, u64>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            series: HashMap::new(),
        }
    }
}

/// Every counter the enricher exposes.
#[derive(Debug)]
pub struct Metrics {
    seccomp: Family,
    selinux: Family,
    apparmor: Family,
    series: usize,
    /// Denials not counted by labels: the series bound was reached.
    pub series_overflow: u64,
    /// Plain counters: (name, help, value), set by the pipeline.
    pub totals: Vec<(&'static str, &'static str, u64)>,
    /// Gauges set by the daemon (its node's containers by seccomp mode: `k8s::coverage`).
    pub gauges: Vec<Gauge>,
    /// Still starting: `/readyz` answers 503 (the daemon clears it once its recorder is
    /// loaded and its watches are made; `syscribe enrich` is ready at once).
    pub starting: bool,
}

/// A gauge family set as a whole by its owner (bounded there).
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    /// Label values (as many as `labels`) and value.
    pub series: Vec<(Vec<String>, u64)>,
}

impl Metrics {
    /// No counters yet, and not ready (`/readyz` 503) until `starting` is cleared.
    pub fn starting() -> Self {
        Self {
            starting: true,
            ..Self::default()
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            seccomp: Family::new(
                "seccomp_profile_audit_total",
                "Seccomp audit records (denials and logged syscalls).",
                &[
                    "node",
                    "namespace",
                    "pod",
                    "container",
                    "executable",
                    "syscall",
                ],
            ),
            selinux: Family::new(
                "selinux_profile_audit_total",
                "SELinux AVC records.",
                &[
                    "node",
                    "namespace",
                    "pod",
                    "container",
                    "executable",
                    "scontext",
                    "tcontext",
                ],
            ),
            apparmor: Family::new(
                "apparmor_profile_audit_total",
                "AppArmor audit records.",
                &[
                    "node",
                    "namespace",
                    "pod",
                    "container",
                    "profile",
                    "operation",
                    "apparmor",
                ],
            ),
            series: 0,
            series_overflow: 0,
            totals: Vec::new(),
            gauges: Vec::new(),
            starting: false,
        }
    }
}

impl Metrics {
    pub const MAX_SERIES: usize = 10_000;

    /// Counts one enriched line.
    pub fn observe(&mut self, e: &Enriched) {
        fn s<T: AsRef<str>>(v: &Option<T>) -> String {
            v.as_ref()
                .map(|v| v.as_ref().to_owned())
                .unwrap_or_default()
        }
        let common = [s(&e.node), s(&e.namespace), s(&e.pod), s(&e.container)];
        let (family, rest) = match e.kind {
            "seccomp" => (
                &mut self.seccomp,
                vec![
                    s(&e.executable),
                    e.syscall_name
                        .as_deref()
                        .map(str::to_owned)
                        .or_else(|| e.syscall_id.map(|n| n.to_string()))
                        .unwrap_or_default(),
                ],
            ),
            "selinux" => (
                &mut self.selinux,
                vec![s(&e.executable), s(&e.scontext), s(&e.tcontext)],
            ),
            _ => (
                &mut self.apparmor,
                vec![s(&e.profile), s(&e.operation), s(&e.apparmor)],
            ),
        };
        let key: Vec<String> = common.into_iter().chain(rest).collect();
        if let Some(count) = family.series.get_mut(&key) {
            *count += 1;
        } else if self.series < Self::MAX_SERIES {
            family.series.insert(key, 1);
            self.series += 1;
        } else {
            self.series_overflow += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in [&self.seccomp, &self.selinux, &self.apparmor] {
            let _ = writeln!(out, "# HELP {PREFIX}_{} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {PREFIX}_{} counter", family.name);
            let mut series: Vec<_> = family.series.iter().collect();
            series.sort();
            for (values, count) in series {
                let labels: Vec<String> = family
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = writeln!(
                    out,
                    "{PREFIX}_{}{{{}}} {count}",
                    family.name,
                    labels.join(",")
                );
            }
        }
        let totals = self.totals.iter().copied().chain([(
            "syscribe_enricher_series_overflow_total",
            "Denials not counted by labels: too many distinct label sets.",
            self.series_overflow,
        )]);
        for (name, help, value) in totals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        for gauge in &self.gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge",
                name = gauge.name,
                help = gauge.help
            );
            for (values, value) in &gauge.series {
                let labels: Vec<String> = gauge
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", gauge.name);
                } else {
                    let _ = writeln!(out, "{}{{{}}} {value}", gauge.name, labels.join(","));
                }
            }
        }
        // The daemon's per-operation counters (profiles, recordings, API errors).
        super::op_metrics::render(&mut out);
        out
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The endpoint's bounds. It serves one connection at a time (a scraper and the kubelet's
/// probes, each a request now and then), so each bound is also how long one client can hold it.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Largest request head (431 beyond).
    pub max_head: usize,
    /// The head must come whole within this from the connection's start.
    pub head_timeout: Duration,
    /// The whole exchange, answer taken included, within this (a client that never reads
    /// its answer cannot hold the endpoint).
    pub connection_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_head: 8192,
            head_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a thread; returns the bound address.
pub fn serve(addr: SocketAddr, metrics: Arc<Mutex<Metrics>>) -> std::io::Result<SocketAddr> {
    serve_with(addr, metrics, ServeLimits::default())
}

/// [`serve`] within `limits`: HTTP/1.1 by hyper, one request per connection.
pub fn serve_with(
    addr: SocketAddr,
    metrics: Arc<Mutex<Metrics>>,
    limits: ServeLimits,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    // Its own small runtime: the endpoint is started both from the daemon's runtime and from
    // `syscribe enrich`, which has none.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept(listener, metrics, limits)))?;
    Ok(bound)
}

async fn accept(
    listener: std::net::TcpListener,
    metrics: Arc<Mutex<Metrics>>,
    limits: ServeLimits,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => return tracing::error!(error = %err, "metrics endpoint"),
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(false)
        .max_buf_size(limits.max_head.max(8192))
        .max_header_size(limits.max_head)
        .header_read_timeout(limits.head_timeout);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %err, "accepting a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = hyper::service::service_fn(|request: http::Request<_>| {
            let answer = answer(request.uri().path(), &metrics);
            async move { Ok::<_, std::convert::Infallible>(answer) }
        });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        match tokio::time::timeout(limits.connection_timeout, connection).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "metrics connection"),
            Err(_) => tracing::debug!("metrics connection timed out"),
        }
    }
}

fn answer(
    path: &str,
    metrics: &Mutex<Metrics>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, body) = match path {
        "/metrics" => (
            http::StatusCode::OK,
            metrics.lock().map(|m| m.render()).unwrap_or_default(),
        ),
        "/readyz"
            if metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .starting =>
        {
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "starting\n".to_owned(),
            )
        }
        "/healthz" | "/readyz" => (http::StatusCode::OK, "ok\n".to_owned()),
        _ => (http::StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    fn seccomp_line(syscall: &str) -> Enriched {
        Enriched {
            kind: "seccomp",
            node: Some("n1".into()),
            namespace: Some("shop".into()),
            pod: Some("web-1".into()),
            container: Some("web".into()),
            executable: Some("/bin/a\"b".into()),
            syscall_name: Some(syscall.into()),
            ..Enriched::default()
        }
    }

    #[test]
    fn counts_by_upstream_labels_and_escapes_values() {
        let mut metrics = Metrics::default();
        metrics.observe(&seccomp_line("sync"));
        metrics.observe(&seccomp_line("sync"));
        metrics.observe(&seccomp_line("mount"));
        let text = metrics.render();
        assert!(
            text.contains(r#"security_profiles_operator_seccomp_profile_audit_total{node="n1",namespace="shop",pod="web-1",container="web",executable="/bin/a\"b",syscall="sync"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"syscall="mount"} 1"#), "{text}");
        assert!(
            text.contains("# TYPE security_profiles_operator_selinux_profile_audit_total counter")
        );
    }

    #[test]
    fn series_are_bounded_and_the_rest_counted() {
        let mut metrics = Metrics::default();
        for n in 0..Metrics::MAX_SERIES + 5 {
            metrics.observe(&seccomp_line(&format!("s{n}")));
        }
        assert_eq!(metrics.series_overflow, 5);
        assert!(
            metrics
                .render()
                .contains("syscribe_enricher_series_overflow_total 5")
        );
    }

    #[test]
    fn serves_metrics_and_health_over_http() {
        let metrics = Arc::new(Mutex::new(Metrics::default()));
        metrics.lock().unwrap().observe(&seccomp_line("sync"));
        let addr = serve("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        let get = |path: &str| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        };
        let response = get("/metrics");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains(r#"syscall="sync"} 1"#), "{response}");
        assert!(get("/healthz").ends_with("ok\n"));
        assert!(get("/readyz").ends_with("ok\n"));
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
        // A daemon still starting is alive but not ready.
        metrics.lock().unwrap().starting = true;
        let starting = get("/readyz");
        assert!(starting.starts_with("HTTP/1.1 503"), "{starting}");
        assert!(get("/healthz").ends_with("ok\n"));
        metrics.lock().unwrap().starting = false;
        assert!(get("/readyz").ends_with("ok\n"));
    }
}
