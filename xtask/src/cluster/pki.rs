//! The cluster's own PKI, made with openssl: one CA, a certificate per component (ECDSA P-256)
//! with the identity the real authorizer knows it by, and the service-account signing key.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::run;

/// Who a certificate is for.
pub struct Identity<'a> {
    /// File stem in the PKI directory.
    pub file: &'a str,
    pub common_name: String,
    pub organization: Option<&'a str>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A new CA and service-account key in `dir` (replacing what was there).
    pub fn create(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self {
            dir: dir.to_path_buf(),
        };
        run(openssl(dir).args(["req", "-x509"]).args(NEW_KEY).args([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=syscribe-cluster-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]))
        .context("making the cluster CA")?;
        run(openssl(dir).args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sa.key",
        ]))?;
        run(openssl(dir).args(["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"]))?;
        Ok(pki)
    }

    /// A certificate for `who`, signed by the CA, valid for server and client use.
    pub fn issue(&self, who: &Identity) -> Result<()> {
        let subject = match who.organization {
            Some(org) => format!("/O={org}/CN={}", who.common_name),
            None => format!("/CN={}", who.common_name),
        };
        let key = format!("{}.key", who.file);
        let csr = format!("{}.csr", who.file);
        let crt = format!("{}.crt", who.file);
        let ext = format!("{}.ext", who.file);
        let mut sans: Vec<String> = who.dns.iter().map(|d| format!("DNS:{d}")).collect();
        sans.extend(who.ips.iter().map(|ip| format!("IP:{ip}")));
        let mut extensions = String::from(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        if !sans.is_empty() {
            extensions.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        fs::write(self.dir.join(&ext), extensions)?;
        run(openssl(&self.dir)
            .arg("req")
            .args(NEW_KEY)
            .args(["-keyout", &key, "-out", &csr, "-subj", &subject]))
        .with_context(|| format!("making the key of {}", who.file))?;
        run(openssl(&self.dir).args([
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ]))
        .with_context(|| format!("signing the certificate of {}", who.file))?;
        let _ = fs::remove_file(self.dir.join(csr));
        let _ = fs::remove_file(self.dir.join(ext));
        Ok(())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A kubeconfig for `who` (issued before) that talks to `server`.
    pub fn kubeconfig(&self, who: &str, server: &str) -> Result<PathBuf> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: syscribe\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {who}\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: {who}@syscribe\n  context: {{cluster: syscribe, user: {who}}}\ncurrent-context: {who}@syscribe\n",
            ca = self.path("ca.crt").display(),
            crt = self.path(&format!("{who}.crt")).display(),
            key = self.path(&format!("{who}.key")).display(),
        );
        let path = self.dir.join(format!("{who}.kubeconfig"));
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// `openssl req` arguments for a new unencrypted ECDSA P-256 key.
const NEW_KEY: [&str; 6] = [
    "-new",
    "-nodes",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
];

fn openssl(dir: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir);
    cmd
}
