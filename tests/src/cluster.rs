//! The real cluster of `cargo xtask cluster up`, driven through kubectl as a user drives it.
//! `cargo xtask test` brings it up, runs `tests/cluster.rs` with these variables set, and
//! tears it down; run elsewhere, every test fails at once saying so.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::Value;

/// kubectl as the cluster's administrator, and what the cluster was built with.
pub struct Kube {
    kubectl: PathBuf,
    pub node: String,
    logs: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the cluster tests run inside `cargo xtask test`, which brings the cluster up first")
    })
}

/// An image `cargo xtask cluster up` imported: `workload` (busybox) or `syscribe`.
pub fn image(what: &str) -> String {
    env(&format!("SYSCRIBE_IMAGE_{}", what.to_uppercase()))
}

impl Kube {
    pub fn get() -> Self {
        crate::require_root();
        Self {
            kubectl: PathBuf::from(env("SYSCRIBE_KUBECTL")),
            node: env("SYSCRIBE_NODE"),
            logs: PathBuf::from(env("SYSCRIBE_CLUSTER_LOGS")),
        }
    }

    pub fn cmd(&self) -> Command {
        // KUBECONFIG is set by xtask.
        Command::new(&self.kubectl)
    }

    /// Runs kubectl; the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running kubectl")
    }

    /// Runs kubectl and returns its stdout; panics with its stderr and the cluster's state if it
    /// fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        if !out.status.success() {
            self.fail(&format!(
                "kubectl {} failed: {}\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }

    /// `kubectl <verb> -f -` with `yaml` on stdin; the output whatever the status.
    pub fn with_stdin(&self, args: &[&str], yaml: &str) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply -f -` that must succeed.
    pub fn apply(&self, yaml: &str) -> String {
        let out = self.with_stdin(&["apply"], yaml);
        if !out.status.success() {
            self.fail(&format!(
                "kubectl apply failed:\n{}\n--- of ---\n{yaml}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `check` every 250 ms until it gives a value; panics after `timeout` naming `what`,
    /// with the cluster's state.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(value) = check() {
                return value;
            }
            if started.elapsed() > timeout {
                self.fail(&format!("{what}: not within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Panics with `message`, the pods, recent events, Syscribe's logs and the tails of the
    /// components' logs: what a person would look at first.
    pub fn fail(&self, message: &str) -> ! {
        let show = |args: &[&str]| {
            let out = self.run(args);
            format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let mut report = vec![
            show(&["get", "pods", "-A", "-o", "wide"]),
            tail(
                show(&["get", "events", "-A", "--sort-by=.lastTimestamp"]),
                20,
            ),
            show(&["logs", "-n", "syscribe", "daemonset/syscribe", "--tail=40"]),
            show(&[
                "logs",
                "-n",
                "syscribe",
                "deployment/syscribe-webhook",
                "--tail=20",
            ]),
        ];
        for component in ["kubelet", "containerd", "kube-apiserver"] {
            report.push(format!(
                "--- {component} log (last 25 lines) ---\n{}",
                self.log_tail(component, 25)
            ));
        }
        // The daemon's whole log, kept beside the components' (the cluster goes after the run).
        let all = self.run(&["logs", "-n", "syscribe", "daemonset/syscribe", "--tail=-1"]);
        let kept = self.logs.join(format!(
            "syscribe-daemon-{}.log",
            std::thread::current()
                .name()
                .unwrap_or("test")
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "-")
        ));
        if std::fs::write(&kept, &all.stdout).is_ok() {
            report.push(format!(
                "--- the daemon's whole log: {} ---",
                kept.display()
            ));
        }
        panic!("{message}\n\n{}", report.join("\n"));
    }

    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.logs.join(format!("{component}.log")))
            .unwrap_or_else(|e| format!("({e})"));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until a pod has Succeeded; fails at once, with its logs, if it Failed.
    pub fn wait_succeeded(&self, namespace: &str, pod: &str, timeout: Duration) {
        self.wait_for(&format!("pod {namespace}/{pod} Succeeded"), timeout, || {
            let phase = self.pod_phase(namespace, pod);
            if phase == "Failed" {
                let logs = self.run(&["logs", "-n", namespace, pod]);
                self.fail(&format!(
                    "pod {namespace}/{pod} failed; its log:\n{}",
                    String::from_utf8_lossy(&logs.stdout)
                ));
            }
            (phase == "Succeeded").then_some(())
        });
    }

    /// Waits until a pod is Running.
    pub fn wait_running(&self, namespace: &str, pod: &str, timeout: Duration) {
        self.wait_for(&format!("pod {namespace}/{pod} Running"), timeout, || {
            (self.pod_phase(namespace, pod) == "Running").then_some(())
        });
    }

    /// Waits until a pod's log contains `needle`; returns the log.
    pub fn wait_log(&self, namespace: &str, pod: &str, needle: &str, timeout: Duration) -> String {
        self.wait_for(
            &format!("the log of pod {namespace}/{pod} saying {needle:?}"),
            timeout,
            || {
                let out = self.run(&["logs", "-n", namespace, pod]);
                let logs = String::from_utf8_lossy(&out.stdout).into_owned();
                logs.contains(needle).then_some(logs)
            },
        )
    }

    /// `kubectl get <kind> <name> -o json`, parsed; None while there is no such object.
    pub fn object(&self, kind: &str, name: &str) -> Option<Value> {
        let out = self.run(&["get", kind, name, "-o", "json"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until the object `kind/name` exists with `.status.status` == `status` (a profile
    /// Installed, Error, …); returns it.
    pub fn wait_status(&self, kind: &str, name: &str, status: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("{kind} {name} {status}"), timeout, || {
            self.object(kind, name)
                .filter(|object| object["status"]["status"] == status)
        })
    }

    /// `kubectl delete ARGS --wait=true`: returns once what it names is gone.
    pub fn delete(&self, args: &[&str]) {
        let mut all = vec!["delete"];
        all.extend(args);
        all.push("--wait=true");
        self.ok(&all);
    }

    /// Syscribe's pods of `app.kubernetes.io/name=<app>` (`syscribe`: the DaemonSet's,
    /// `syscribe-webhook`: the webhook's).
    pub fn syscribe_pods(&self, app: &str) -> Value {
        self.json(&[
            "get",
            "pods",
            "-n",
            "syscribe",
            "-l",
            &format!("app.kubernetes.io/name={app}"),
        ])
    }

    /// The phase of a pod.
    pub fn pod_phase(&self, namespace: &str, pod: &str) -> String {
        self.ok(&[
            "get",
            "pod",
            "-n",
            namespace,
            pod,
            "-o",
            "jsonpath={.status.phase}",
        ])
    }
}

/// The audit log the deployed daemon follows besides the kernel (`--audit-log`, on the node's
/// /var/log/audit, which the DaemonSet mounts): the SELinux recording test writes AVC lines of a
/// real pod's pid there, as auditd would on an SELinux node.
pub const TEST_AUDIT_LOG: &str = "/var/log/audit/syscribe-test.log";

/// Syscribe as deployed by `kubectl apply -k` through the test overlay (once per test binary).
pub struct Deployment {
    pub ca: PathBuf,
}

/// Deploys Syscribe once: the test overlay over deploy/ and deploy/webhook/ (image swapped,
/// the webhook's certificate supplied as a Secret with its CA as caBundle), then waits for the
/// DaemonSet and the webhook Deployment to be Ready.
pub fn deployed(kube: &Kube) -> &'static Deployment {
    static ONCE: OnceLock<Deployment> = OnceLock::new();
    ONCE.get_or_init(|| {
        let overlay = workspace_root().join("target/cluster-overlay");
        let _ = std::fs::remove_dir_all(&overlay);
        std::fs::create_dir_all(&overlay).unwrap();
        let ca = webhook_certificate(&overlay);
        let image = image("syscribe");
        let (name, tag) = image.rsplit_once(':').expect("image reference with a tag");
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&ca).unwrap());
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!(
                r#"# Written by the cluster tests: deploy/ as a user applies it, with the image built from
# this checkout and, as no cert-manager runs here, the webhook's certificate as a Secret.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../deploy
- ../../deploy/webhook
images:
- name: ghcr.io/syscribe/syscribe
  newName: {name}
  newTag: "{tag}"
secretGenerator:
- name: syscribe-webhook-tls
  namespace: syscribe
  type: kubernetes.io/tls
  files: [tls.crt, tls.key]
  options: {{disableNameSuffixHash: true}}
patches:
- patch: |-
    $patch: delete
    apiVersion: cert-manager.io/v1
    kind: Issuer
    metadata: {{name: syscribe-selfsigned, namespace: syscribe}}
- patch: |-
    $patch: delete
    apiVersion: cert-manager.io/v1
    kind: Certificate
    metadata: {{name: syscribe-webhook, namespace: syscribe}}
- target: {{kind: ValidatingWebhookConfiguration, name: syscribe}}
  patch: |-
    - op: add
      path: /webhooks/0/clientConfig/caBundle
      value: {ca_bundle}
- target: {{kind: MutatingWebhookConfiguration, name: syscribe}}
  patch: |-
    - op: add
      path: /webhooks/0/clientConfig/caBundle
      value: {ca_bundle}
- target: {{kind: DaemonSet, name: syscribe}}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --audit-log={TEST_AUDIT_LOG}
"#
            ),
        )
        .unwrap();
        let overlay_arg = overlay.display().to_string();
        kube.ok(&["apply", "-k", &overlay_arg]);
        for crd in [
            "profilerecordings.security-profiles-operator.x-k8s.io",
            "seccompprofiles.security-profiles-operator.x-k8s.io",
            "selinuxprofiles.security-profiles-operator.x-k8s.io",
            "securityprofilenodestatuses.security-profiles-operator.x-k8s.io",
            "profilebindings.security-profiles-operator.x-k8s.io",
        ] {
            kube.ok(&["wait", "--for=condition=Established", "--timeout=60s", &format!("crd/{crd}")]);
        }
        kube.wait_for("the DaemonSet's pod Ready", Duration::from_secs(120), || {
            rollout_done(kube, "daemonset/syscribe").then_some(())
        });
        kube.wait_for("the webhook Deployment Ready", Duration::from_secs(120), || {
            rollout_done(kube, "deployment/syscribe-webhook").then_some(())
        });
        // Ready pods are not yet a webhook the API server can call (kube-proxy's rules for the
        // Service, the certificate the pods serve): a server-side dry run goes through it.
        let probe = "apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: SeccompProfile\nmetadata: {name: webhook-probe}\nspec: {defaultAction: SCMP_ACT_ALLOW}\n";
        kube.wait_for("the API server calling the webhook", Duration::from_secs(120), || {
            kube.with_stdin(&["create", "--dry-run=server"], probe)
                .status
                .success()
                .then_some(())
        });
        Deployment { ca }
    })
}

fn rollout_done(kube: &Kube, what: &str) -> bool {
    kube.run(&["rollout", "status", "-n", "syscribe", what, "--timeout=1s"])
        .status
        .success()
}

/// A CA and the webhook's serving certificate for its Service name, written into `dir` as
/// ca.crt, tls.crt, tls.key (what cert-manager would put in the Secret).
fn webhook_certificate(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=syscribe-test-webhook-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new"],
            &ec[..],
            &[
                "-keyout",
                "tls.key",
                "-out",
                "tls.csr",
                "-subj",
                "/CN=syscribe-webhook.syscribe.svc",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("tls.ext"),
        "subjectAltName=DNS:syscribe-webhook.syscribe.svc,DNS:syscribe-webhook.syscribe.svc.cluster.local\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "tls.crt",
        "-extfile",
        "tls.ext",
    ]);
    dir.join("ca.crt")
}

fn tail(text: String, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is below the workspace root")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The daemon as a process of the node, its logs with their times, and the rig's components.

/// The seconds since the epoch of an RFC 3339 UTC time as kubectl prints it with
/// `--timestamps` (`2026-11-30T06:55:01.123456789Z`).
pub fn rfc3339_seconds(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = t.next()?.parse().ok()?;
    // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + s)
}

/// Now, in seconds since the epoch.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

impl Kube {
    /// The name of the daemon's pod that is Ready (waits for one).
    pub fn daemon_pod(&self) -> String {
        self.wait_for("a Ready daemon pod", Duration::from_secs(120), || {
            let pods = self.syscribe_pods("syscribe");
            pods["items"].as_array()?.iter().find_map(|p| {
                let ready = p["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (ready && p["metadata"]["deletionTimestamp"].is_null())
                    .then(|| p["metadata"]["name"].as_str().unwrap().to_owned())
            })
        })
    }

    /// The pod's log lines with the times the runtime wrote them (seconds since the epoch).
    pub fn timed_logs(&self, namespace: &str, pod: &str) -> Vec<(f64, String)> {
        let out = self.run(&["logs", "-n", namespace, pod, "--timestamps", "--tail=-1"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let (ts, rest) = line.split_once(' ')?;
                Some((rfc3339_seconds(ts)?, rest.to_owned()))
            })
            .collect()
    }

    /// The daemon's /metrics, read as Prometheus would from inside the cluster: a pod on the
    /// pod network fetches `http://<daemon pod IP>:9890/metrics` (the daemon runs on the
    /// host's network, so that is the node's address).
    pub fn scrape_metrics_from_a_pod(&self, namespace: &str, name: &str) -> String {
        let daemon = self.daemon_pod();
        let ip = self.ok(&[
            "get",
            "pod",
            "-n",
            "syscribe",
            &daemon,
            "-o",
            "jsonpath={.status.podIP}",
        ]);
        let _ = self.run(&["delete", "pod", "-n", namespace, name, "--wait=true"]);
        self.apply(&format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  restartPolicy: Never
  containers:
  - name: scrape
    image: {image}
    command: [sh, -c, "printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} 9890"]
"#,
            image = image("workload")
        ));
        self.wait_succeeded(namespace, name, Duration::from_secs(60));
        let response = self.ok(&["logs", "-n", namespace, name]);
        self.ok(&["delete", "pod", "-n", namespace, name, "--wait=false"]);
        // HTTP/1.0 by hand (the image's busybox wget crashes on answers): the body after the
        // head (the runtime's log keeps lines, not their carriage returns).
        let response = response.replace("\r\n", "\n");
        let (head, body) = response
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("no HTTP answer from {ip}:9890: {response:?}"));
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        body.to_owned()
    }
}

/// The value of the Prometheus series `series` (its name and labels exactly as printed), 0
/// when it is absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// The host pids of the running `syscribe daemon` processes.
pub fn daemon_pids() -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"/syscribe"))
            && args.get(1) == Some(&&b"daemon"[..])
        {
            found.push(pid);
        }
    }
    found
}

/// A process's resident memory in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process's CPU time (user and system) in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3; utime and stime are 14, 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// Warnings other tests caused on purpose (the API server stopped), as windows of time:
/// `s9` does not count log lines written inside them. The tests run in one process, in order.
static TOLERATED: std::sync::Mutex<Vec<(f64, f64, String)>> = std::sync::Mutex::new(Vec::new());

/// Says that warnings logged between `from` and `to` (seconds since the epoch) are expected,
/// and why.
pub fn tolerate_warnings(from: f64, to: f64, why: &str) {
    TOLERATED.lock().unwrap().push((from, to, why.to_owned()));
}

/// The windows of [`tolerate_warnings`].
pub fn tolerated_warnings() -> Vec<(f64, f64, String)> {
    TOLERATED.lock().unwrap().clone()
}

/// A component of the rig (`cargo xtask cluster up` runs each as a process of this machine)
/// that was stopped: its command line, environment and directory, read from /proc before it
/// was stopped, to start it again exactly so.
pub struct Stopped {
    name: String,
    argv: Vec<std::ffi::OsString>,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    cwd: PathBuf,
}

fn component_pid_file(name: &str) -> PathBuf {
    PathBuf::from(env("SYSCRIBE_CLUSTER_STATE"))
        .join("pids")
        .join(name)
}

/// Stops a component: SIGTERM, and SIGKILL if it has not exited within `grace`.
pub fn stop_component(name: &str, grace: Duration) -> Stopped {
    use std::os::unix::ffi::OsStrExt as _;
    let pid_file = component_pid_file(name);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
        .trim()
        .parse()
        .unwrap();
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let split = |bytes: Vec<u8>| -> Vec<std::ffi::OsString> {
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
            .collect()
    };
    let argv = split(std::fs::read(proc.join("cmdline")).unwrap());
    let env = split(std::fs::read(proc.join("environ")).unwrap())
        .into_iter()
        .filter_map(|kv| {
            let bytes = kv.as_bytes();
            let eq = bytes.iter().position(|b| *b == b'=')?;
            Some((
                std::ffi::OsStr::from_bytes(&bytes[..eq]).to_owned(),
                std::ffi::OsStr::from_bytes(&bytes[eq + 1..]).to_owned(),
            ))
        })
        .collect();
    let cwd = std::fs::read_link(proc.join("cwd")).unwrap();
    assert!(
        argv.first().is_some_and(
            |a| std::path::Path::new(a).file_name() == Some(std::ffi::OsStr::new(name))
        ),
        "pid {pid} is not {name}: {argv:?}"
    );
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill {name}");
    let started = Instant::now();
    let alive = || std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| !s.contains(") Z "));
    let mut killed = false;
    while alive() {
        if !killed && started.elapsed() > grace {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        assert!(
            started.elapsed() < grace + Duration::from_secs(30),
            "{name} (pid {pid}) did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{name} stopped after {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if killed {
            " (killed after its grace)"
        } else {
            ""
        }
    );
    Stopped {
        name: name.to_owned(),
        argv,
        env,
        cwd,
    }
}

impl Stopped {
    /// Starts it again: its own session, its output appended to its log, its pid where
    /// `cargo xtask cluster down` looks for it.
    pub fn start(self, logs: &Path) {
        use std::os::unix::process::CommandExt as _;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(logs.join(format!("{}.log", self.name)))
            .unwrap();
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        std::fs::write(component_pid_file(&self.name), child.id().to_string()).unwrap();
        // Reaped if it exits while the tests run; `cargo xtask cluster down` stops it after.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
    }
}

impl Kube {
    /// Where the components' logs are (`<component>.log`).
    pub fn logs_dir(&self) -> &Path {
        &self.logs
    }
}
