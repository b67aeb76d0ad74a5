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
