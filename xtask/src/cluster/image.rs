//! Container images without a registry: a root filesystem assembled from this machine's files,
//! written as an OCI image-layout archive (one uncompressed layer) that `ctr images import`
//! takes. Deterministic: the same files give the same digests (sorted entries, mtime 0, root
//! owner), so an unchanged binary is not imported again.

use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::stdout_of;

/// One entry of an image's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// Contents and mode.
    File(Vec<u8>, u32),
    Symlink(String),
}

/// A root filesystem: absolute paths (without the leading `/`) → entries.
#[derive(Debug, Default)]
pub struct Rootfs {
    entries: BTreeMap<String, Entry>,
}

impl Rootfs {
    /// Adds `entry` at `path` and every missing parent directory.
    pub fn add(&mut self, path: &str, entry: Entry) {
        let path = path.trim_start_matches('/').to_owned();
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            self.entries
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Entry::Dir);
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
    }

    /// Copies a host file (contents and permission bits) to `path`.
    pub fn copy(&mut self, host: &Path, path: &str) -> Result<()> {
        let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = fs::metadata(host)?.permissions().mode() & 0o7777;
        self.add(path, Entry::File(data, mode));
        Ok(())
    }

    /// Copies an executable and every shared library `ldd` says it loads (at the same paths,
    /// the dynamic loader included), so it runs in an otherwise empty image.
    pub fn copy_executable(&mut self, host: &Path, path: &str) -> Result<()> {
        self.copy(host, path)?;
        let out = Command::new("ldd")
            .arg(host)
            .output()
            .with_context(|| format!("running ldd {}", host.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            if text.contains("not a dynamic executable")
                || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
            {
                return Ok(());
            }
            bail!(
                "ldd {} failed: {}",
                host.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for lib in shared_libraries(&text)? {
            // Keep the path the loader asks for, with the contents of the file it resolves to.
            let real = fs::canonicalize(&lib).with_context(|| format!("resolving {lib}"))?;
            self.copy(&real, &lib)?;
        }
        Ok(())
    }

    /// busybox-static's binary and a link for each of its applets under `/bin`.
    pub fn busybox(&mut self) -> Result<()> {
        let host = Path::new("/bin/busybox");
        self.copy(host, "/bin/busybox")?;
        let list = stdout_of(Command::new(host).arg("--list"))?;
        for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
            // A link named busybox would replace the binary itself.
            if applet != "busybox" && !applet.contains('/') {
                self.add(&format!("/bin/{applet}"), Entry::Symlink("busybox".into()));
            }
        }
        Ok(())
    }

    /// Minimal account files: root, and `nonroot` (65532) for workloads that run as it.
    pub fn accounts(&mut self) {
        self.add(
            "/etc/passwd",
            Entry::File(
                b"root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n".to_vec(),
                0o644,
            ),
        );
        self.add(
            "/etc/group",
            Entry::File(b"root:x:0:\nnonroot:x:65532:\n".to_vec(), 0o644),
        );
        self.add("/tmp", Entry::Dir);
    }

    /// Writes the files into `dir`, which must not exist yet (nothing of anyone's is
    /// overwritten); `deploy/Containerfile` copies such a directory into an empty image.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        fs::create_dir(dir)
            .with_context(|| format!("creating {} (it must not exist yet)", dir.display()))?;
        for (path, entry) in &self.entries {
            let target = dir.join(path);
            match entry {
                Entry::Dir => fs::create_dir(&target)
                    .with_context(|| format!("creating {}", target.display()))?,
                Entry::File(data, mode) => {
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&target)
                        .with_context(|| format!("creating {}", target.display()))?;
                    file.write_all(data)?;
                    file.set_permissions(fs::Permissions::from_mode(*mode))?;
                }
                Entry::Symlink(link) => std::os::unix::fs::symlink(link, &target)
                    .with_context(|| format!("linking {}", target.display()))?,
            }
        }
        Ok(())
    }

    fn layer(&self) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                Entry::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(if path == "tmp" { 0o1777 } else { 0o755 });
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), &[][..])?;
                }
                Entry::File(data, mode) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, &data[..])?;
                }
                Entry::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)?;
                }
            }
        }
        Ok(tar.into_inner()?)
    }
}

/// The paths `ldd` resolved (`libx.so => /lib/…/libx.so (0x…)`, and the loader's own line).
fn shared_libraries(ldd: &str) -> Result<Vec<String>> {
    let mut libs = Vec::new();
    for line in ldd.lines().map(str::trim) {
        if line.starts_with("linux-vdso") || line.is_empty() {
            continue;
        }
        if line.contains("not found") {
            bail!("a shared library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(path.to_owned());
        }
    }
    Ok(libs)
}

/// An image to write: a name (`localhost/x`), its root filesystem and how it starts.
pub struct Image {
    pub name: String,
    pub rootfs: Rootfs,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// A written archive and the full reference it was tagged with.
pub struct Archive {
    pub path: PathBuf,
    /// `name:tag`; the tag is the first 12 hex digits of the manifest's digest.
    pub reference: String,
}

impl Image {
    /// Writes `<dir>/<last name element>.oci.tar`; the tag is derived from the content.
    pub fn write(&self, dir: &Path) -> Result<Archive> {
        let layer = self.rootfs.layer()?;
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        }))?;
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{config_digest}"),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha256:{layer_digest}"),
                "size": layer.len(),
            }],
        }))?;
        let manifest_digest = sha256(&manifest);
        let tag = &manifest_digest[..12];
        let reference = format!("{}:{tag}", self.name);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"),
                "size": manifest.len(),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": reference,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }))?;

        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: String, data: &[u8]| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            tar.append_data(&mut header, path, data)?;
            Ok(())
        };
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json".into(), &index)?;
        add(format!("blobs/sha256/{manifest_digest}"), &manifest)?;
        add(format!("blobs/sha256/{config_digest}"), &config)?;
        add(format!("blobs/sha256/{layer_digest}"), &layer)?;
        let bytes = tar.into_inner()?;

        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file_name = self.name.rsplit('/').next().unwrap_or("image");
        let path = dir.join(format!("{file_name}.oci.tar"));
        let mut file = super::create_file(&path)?;
        file.write_all(&bytes)?;
        Ok(Archive { path, reference })
    }
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_the_paths_the_loader_opens() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffc)\n\tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x7f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            shared_libraries(ldd).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libseccomp.so.2",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        let err = shared_libraries("\tlibfoo.so => not found\n").unwrap_err();
        assert!(err.to_string().contains("libfoo.so => not found"));
    }

    #[test]
    fn the_same_files_give_the_same_tag_and_parents_are_added() {
        let image = |data: &[u8]| {
            let mut rootfs = Rootfs::default();
            rootfs.add("/usr/local/bin/x", Entry::File(data.to_vec(), 0o755));
            Image {
                name: "localhost/t".into(),
                rootfs,
                entrypoint: vec!["/usr/local/bin/x".into()],
                cmd: vec![],
            }
        };
        let dir = std::env::temp_dir().join(format!("xtask-image-{}", std::process::id()));
        let a = image(b"one").write(&dir).unwrap().reference;
        let b = image(b"one").write(&dir).unwrap().reference;
        let c = image(b"two").write(&dir).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c.reference);
        let mut archive = tar::Archive::new(fs::File::open(&c.path).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[..2], ["oci-layout", "index.json"]);
        assert_eq!(names.len(), 5);
        let mut rootfs = Rootfs::default();
        rootfs.add("/usr/local/bin/x", Entry::Dir);
        assert_eq!(
            rootfs.entries.keys().collect::<Vec<_>>(),
            ["usr", "usr/local", "usr/local/bin", "usr/local/bin/x"]
        );
        let _ = fs::remove_dir_all(dir);
    }
}
