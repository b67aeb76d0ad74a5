//! SELinux policy modules on a node: installed and removed with the real tools (semodule, which
//! compiles CIL with libsepol through libsemanage), in the node's policy store or in an offline
//! store below another root (`semodule -p ROOT -n`: built, not loaded — how the tests use it on
//! machines where SELinux is off).
//!
//! A module that fails to build leaves the store as it was (libsemanage commits a transaction
//! or nothing); the compiler's complaints come back with the module's line numbers, which
//! callers map to their profile's fields or policy lines.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

/// The template every profile inherits (`(blockinherit container)`), shipped with Syscribe for
/// policies that have none (see deploy/selinux/container.cil).
pub const CONTAINER_TEMPLATE: &str = include_str!("../../deploy/selinux/container.cil");
/// The module name the template is installed as.
pub const TEMPLATE_MODULE: &str = "container";
/// The permissive recording type's module (deploy/selinux/selinuxrecording.cil): pods recorded
/// by a SelinuxProfile recording run as [`RECORDING_TYPE`].
pub const RECORDING_POLICY: &str = include_str!("../../deploy/selinux/selinuxrecording.cil");
/// The module name it is installed as (upstream's).
pub const RECORDING_MODULE: &str = "selinuxrecording";
/// The SELinux type a recorded pod's containers run as: `seLinuxOptions.type`.
pub const RECORDING_TYPE: &str = "selinuxrecording.process";
/// Where SELinux is on: the kernel's selinuxfs.
pub const SELINUXFS: &str = "/sys/fs/selinux";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{name:?} cannot be a module name: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("cannot run {tool}: {source} (install policycoreutils and semodule-utils)")]
    Tool {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the module: {0}")]
    Io(#[from] std::io::Error),
    /// The compiler refused the module; the store is unchanged.
    #[error("the policy compiler refused module {name}: {}", .complaints.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        name: String,
        complaints: Vec<Complaint>,
    },
}

/// One line of the compiler's, with the line of the module it names (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Complaint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "module line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Whether this node enforces or at least runs SELinux.
pub fn enabled() -> bool {
    Path::new(SELINUXFS).join("enforce").exists()
}

/// A module name: what CIL takes as a block name (no '.', which is its namespace separator).
pub fn module_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 200 {
        return Some("it must have 1 to 200 characters");
    }
    if name.contains('.') {
        return Some("CIL reads '.' as a namespace separator; use '-' or '_'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Some("only letters, digits, '-' and '_' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Some("it must start with a letter");
    }
    None
}

/// A policy store: the node's (`root` None), or an offline one below `root`.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    root: Option<PathBuf>,
}

impl PolicyStore {
    pub fn host() -> Self {
        Self { root: None }
    }

    pub fn offline(root: &Path) -> Self {
        Self {
            root: Some(root.to_owned()),
        }
    }

    fn semodule(&self) -> Command {
        let mut cmd = Command::new("semodule");
        if let Some(root) = &self.root {
            // Build the policy below ROOT, do not load it into a kernel.
            cmd.arg("-p").arg(root).arg("-n");
        }
        cmd
    }

    /// Runs semodule with `args`; its stdout, or its complaints about module `name`.
    fn run(&self, args: &[&std::ffi::OsStr], name: &str) -> Result<String, StoreError> {
        let out = self
            .semodule()
            .args(args)
            .output()
            .map_err(|source| StoreError::Tool {
                tool: "semodule",
                source,
            })?;
        if !out.status.success() {
            return Err(StoreError::Refused {
                name: name.to_owned(),
                complaints: complaints(&String::from_utf8_lossy(&out.stderr), name),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The modules in the store.
    pub fn modules(&self) -> Result<BTreeSet<String>, StoreError> {
        Ok(self
            .run(&["-l".as_ref()], "")?
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect())
    }

    /// Installs the template unless the store already has a module of its name. Returns
    /// whether it was installed now.
    pub fn ensure_template(&self) -> Result<bool, StoreError> {
        if self.modules()?.contains(TEMPLATE_MODULE) {
            return Ok(false);
        }
        self.install(TEMPLATE_MODULE, CONTAINER_TEMPLATE)?;
        Ok(true)
    }

    /// Installs the template and the permissive recording module unless the store has them.
    /// Returns whether the recording module was installed now.
    pub fn ensure_recording_module(&self) -> Result<bool, StoreError> {
        self.ensure_template()?;
        if self.modules()?.contains(RECORDING_MODULE) {
            return Ok(false);
        }
        self.install(RECORDING_MODULE, RECORDING_POLICY)?;
        Ok(true)
    }

    /// Compiles and installs `cil` as module `name` (replacing one of the same name). On a
    /// refusal the store is as it was and the complaints name the module's lines.
    pub fn install(&self, name: &str, cil: &str) -> Result<(), StoreError> {
        if let Some(reason) = module_name_problem(name) {
            return Err(StoreError::Name {
                name: name.to_owned(),
                reason,
            });
        }
        // semodule names the module after the file: <private dir>/<name>.cil.
        let dir = private_dir()?;
        let file = dir.join(format!("{name}.cil"));
        let installed = crate::files::Dir::open(&dir)
            .and_then(|d| d.write_atomically(&format!("{name}.cil"), cil.as_bytes(), false))
            .map_err(StoreError::from)
            .and_then(|()| self.run(&["-i".as_ref(), file.as_os_str()], name));
        // Whatever happened, the private directory goes.
        let _ = std::fs::remove_dir_all(&dir);
        installed.map(drop)
    }

    /// Removes module `name`; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        if !self.modules()?.contains(name) {
            return Ok(false);
        }
        self.run(&["-r".as_ref(), name.as_ref()], name)?;
        Ok(true)
    }
}

/// A policy to compile profiles against before they reach a node: the modules of a policy
/// store (`/var/lib/selinux/<type>`, as libsemanage keeps them: `active/modules/<priority>/
/// <name>/cil`, bzip2), each at its highest priority and without the disabled ones, plus
/// Syscribe's container template when the store has none — what a node would compile the
/// profile with. Read once into memory (memfd, nothing on disk); each check runs
/// the real CIL compiler (secilc) on those files and the module.
pub struct PolicyBase {
    /// The modules' CIL, each in an anonymous memory file (memfd): nothing on disk to leak
    /// when the process is killed, as a webhook pod is. Named to secilc through
    /// `/proc/<our pid>/fd/<fd>`.
    files: Vec<(String, std::os::fd::OwnedFd)>,
    store: PathBuf,
    /// A check that takes longer is stopped and said (the webhook answers within its timeout).
    timeout: std::time::Duration,
    /// One compilation at a time: each takes seconds of one core.
    one_at_a_time: std::sync::Mutex<()>,
    /// What the modules declare, to name what an allow rule the compiler could not resolve
    /// is missing (secilc says only "Failed to resolve allow statement").
    types: std::collections::HashSet<String>,
    classes: std::collections::HashSet<String>,
    blocks: std::collections::HashSet<String>,
}

/// The name a one-line declaration `(type x)` / `(class x (…))` declares, for the statements
/// in `kinds`.
fn declared<'a>(line: &'a str, kinds: &[&str]) -> Option<(&'a str, &'a str)> {
    let rest = line.trim_start().strip_prefix('(')?;
    let (kind, rest) = rest.split_once(' ')?;
    if !kinds.contains(&kind) {
        return None;
    }
    let name = rest
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ')' || c == '(')
        .next()?;
    (!name.is_empty()).then_some((kind, name))
}

const TYPE_DECLARATIONS: [&str; 3] = ["type", "typeattribute", "typealias"];

/// A module's CIL, decompressed, at most (Debian's largest, base, is 3 MiB).
const MAX_MODULE_CIL: u64 = 64 << 20;
/// The store's modules, at most.
const MAX_MODULES: usize = 4096;
/// Where a store keeps its modules, below the store directory.
const STORE_MODULES: &str = "active/modules";

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("{}: not a policy store (no {STORE_MODULES} with priority directories below it): {source}", .store.display())]
    NotAStore {
        store: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: more than {MAX_MODULES} modules", .store.display())]
    TooMany { store: PathBuf },
    #[error("{}: no module in the store", .store.display())]
    Empty { store: PathBuf },
}

impl PolicyBase {
    /// The compiler's time for one check, at most (Debian's reference policy: 5–7 s here).
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

    /// The store this host's SELinux config names (`SELINUXTYPE` in /etc/selinux/config), if
    /// it exists.
    pub fn host_store() -> Option<PathBuf> {
        let config = std::fs::read_to_string("/etc/selinux/config").ok()?;
        let kind = config
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SELINUXTYPE="))
            .next_back()?
            .trim();
        (module_name_problem(kind).is_none())
            .then(|| Path::new("/var/lib/selinux").join(kind))
            .filter(|p| p.join(STORE_MODULES).is_dir())
    }

    /// Reads the store's modules (`store` is `/var/lib/selinux/<type>`).
    pub fn load(store: &Path) -> Result<Self, BaseError> {
        let modules = store.join(STORE_MODULES);
        let read_dir = |dir: &Path| {
            std::fs::read_dir(dir).map_err(|source| BaseError::Read {
                path: dir.to_owned(),
                source,
            })
        };
        let disabled: BTreeSet<String> = match std::fs::read_dir(modules.join("disabled")) {
            Ok(entries) => entries
                .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
                .collect(),
            Err(_) => BTreeSet::new(),
        };
        // Name → (priority, file): the highest priority wins, as libsemanage does.
        let mut chosen: std::collections::BTreeMap<String, (u32, PathBuf)> = Default::default();
        let priorities = std::fs::read_dir(&modules).map_err(|source| BaseError::NotAStore {
            store: store.to_owned(),
            source,
        })?;
        for priority in priorities {
            let priority = priority.map_err(|source| BaseError::Read {
                path: modules.clone(),
                source,
            })?;
            let Some(level) = priority
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue; // `disabled`, or not the store's
            };
            for module in read_dir(&priority.path())? {
                let module = module.map_err(|source| BaseError::Read {
                    path: priority.path(),
                    source,
                })?;
                let Some(name) = module.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let cil = module.path().join("cil");
                // A module the store could not compile to CIL (only `hll`) is not in its
                // policy either; names that are not module names are not libsemanage's.
                if disabled.contains(&name)
                    || module_name_problem(&name).is_some()
                    || !cil.is_file()
                {
                    continue;
                }
                if chosen.get(&name).is_none_or(|(l, _)| *l < level) {
                    chosen.insert(name, (level, cil));
                }
                if chosen.len() > MAX_MODULES {
                    return Err(BaseError::TooMany {
                        store: store.to_owned(),
                    });
                }
            }
        }
        if chosen.is_empty() {
            return Err(BaseError::Empty {
                store: store.to_owned(),
            });
        }
        let mut base = Self {
            files: Vec::new(),
            store: store.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            one_at_a_time: std::sync::Mutex::new(()),
            types: Default::default(),
            classes: Default::default(),
            blocks: Default::default(),
        };
        let has_template = chosen.contains_key(TEMPLATE_MODULE);
        for (name, (_, path)) in chosen {
            let text = module_cil(&path).map_err(|source| BaseError::Read {
                path: path.clone(),
                source,
            })?;
            base.learn(&String::from_utf8_lossy(&text));
            let fd = memory_file(&name, &text).map_err(|source| BaseError::Read {
                path: path.clone(),
                source,
            })?;
            base.files.push((format!("{name}.cil"), fd));
        }
        if !has_template {
            base.learn(CONTAINER_TEMPLATE);
            let fd =
                memory_file(TEMPLATE_MODULE, CONTAINER_TEMPLATE.as_bytes()).map_err(|source| {
                    BaseError::Read {
                        path: PathBuf::from("memfd:container.cil"),
                        source,
                    }
                })?;
            base.files.push((format!("{TEMPLATE_MODULE}.cil"), fd));
        }
        Ok(base)
    }

    /// Notes the types, attributes, aliases and classes `cil` declares (one per line, as
    /// libsemanage writes modules).
    fn learn(&mut self, cil: &str) {
        for line in cil.lines() {
            let kinds = [
                "type",
                "typeattribute",
                "typealias",
                "class",
                "classmap",
                "block",
                "blockabstract",
            ];
            match declared(line, &kinds) {
                Some(("class" | "classmap", name)) => self.classes.insert(name.to_owned()),
                Some(("block" | "blockabstract", name)) => self.blocks.insert(name.to_owned()),
                Some((_, name)) => self.types.insert(name.to_owned()),
                None => false,
            };
        }
    }

    /// For an allow rule the compiler could not resolve (`module`'s line `line`): which of
    /// its type and class names the policy does not declare, with the closest that it does.
    fn unresolved(&self, module: &str, line: usize) -> Option<String> {
        let text = module.lines().nth(line.checked_sub(1)?)?;
        let words: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        if let ["blockinherit", template, ..] = words[..] {
            if template.contains('.') || self.blocks.contains(template) {
                return None;
            }
            let closest = crate::profile::validate::suggestion(
                template,
                self.blocks.iter().map(String::as_str),
            );
            return Some(format!(
                "the policy has no template (block) {template:?}{closest}"
            ));
        }
        let [rule, source, target, class, ..] = words[..] else {
            return None;
        };
        if !matches!(rule, "allow" | "auditallow" | "dontaudit" | "neverallow") {
            return None;
        }
        // Names the module declares itself (and block-local or dotted names, which only the
        // compiler resolves) are not judged here.
        let own: std::collections::HashSet<&str> = module
            .lines()
            .filter_map(|l| declared(l, &TYPE_DECLARATIONS).map(|(_, n)| n))
            .collect();
        let unknown_type = |name: &str| {
            name != "self"
                && !name.contains('.')
                && !own.contains(name)
                && !self.types.contains(name)
        };
        let mut said = Vec::new();
        for name in [source, target] {
            if unknown_type(name)
                && !said
                    .iter()
                    .any(|s: &String| s.starts_with(&format!("{name:?}")))
            {
                let closest = crate::profile::validate::suggestion(
                    name,
                    self.types.iter().map(String::as_str),
                );
                said.push(format!(
                    "{name:?} is not a type or attribute of the policy{closest}"
                ));
            }
        }
        if !self.classes.contains(class) && !class.contains('.') {
            let closest = crate::profile::validate::suggestion(
                class,
                self.classes.iter().map(String::as_str),
            );
            said.push(format!("{class:?} is not a class of the policy{closest}"));
        }
        (!said.is_empty()).then(|| said.join("; "))
    }

    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The store the modules come from, and how many.
    pub fn describe(&self) -> String {
        format!("{} ({} modules)", self.store.display(), self.files.len())
    }

    /// Compiles the base and `module` with secilc; the complaints about the module's lines
    /// (and any other the compiler made), or why it could not run.
    pub fn compile(&self, module: &str) -> Result<Vec<Complaint>, String> {
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let work = private_dir().map_err(|err| format!("no temporary directory: {err}"))?;
        let result = self.compile_in(&work, module);
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    fn compile_in(&self, work: &Path, module: &str) -> Result<Vec<Complaint>, String> {
        // The file name is how the compiler's complaints name the module.
        const MODULE_FILE: &str = "syscribe-profile-under-check.cil";
        let handle = crate::files::Dir::open(work).map_err(|err| err.to_string())?;
        handle
            .write_atomically(MODULE_FILE, module.as_bytes(), false)
            .map_err(|err| format!("cannot write the module: {err}"))?;
        let stderr = std::fs::File::create(work.join("stderr"))
            .map_err(|err| format!("cannot write the compiler's output: {err}"))?;
        let mut child = Command::new("secilc")
            // No neverallow check: a module is refused for what it cannot mean, not for what
            // the rest of the policy forbids (a node checks that when it installs it).
            .arg("-N")
            .arg("-o")
            .arg(work.join("policy"))
            .arg("-f")
            .arg(work.join("file_contexts"))
            .args(self.files.iter().map(|(_, fd)| fd_path(fd)))
            .arg(work.join(MODULE_FILE))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|err| format!("cannot run secilc: {err} (install Debian's secilc)"))?;
        let started = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "secilc took more than {} s",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(err) => return Err(format!("waiting for secilc: {err}")),
            }
        };
        if status.success() {
            return Ok(Vec::new());
        }
        let stderr = crate::files::read_regular_text(&work.join("stderr"), 1 << 20)
            .map_err(|err| format!("reading the compiler's output: {err}"))?;
        // The policy's own files by their module's name, not our temporary directory.
        let mut stderr = stderr;
        for (name, fd) in &self.files {
            // `…/fd/12:` and not `…/fd/123:`: the path is always followed by its line.
            let path = format!("{}:", fd_path(fd).display());
            if stderr.contains(&path) {
                stderr = stderr.replace(&path, &format!("{name}:"));
            }
        }
        let mut found = complaints(&stderr, MODULE_FILE);
        for complaint in &mut found {
            if (complaint
                .message
                .starts_with("Failed to resolve allow statement")
                || complaint
                    .message
                    .starts_with("Failed to resolve blockinherit statement"))
                && let Some(why) = complaint.line.and_then(|l| self.unresolved(module, l))
            {
                complaint.message = format!("{}: {why}", complaint.message);
            }
        }
        if found.is_empty() {
            return Err(format!("secilc failed ({status}) and said nothing"));
        }
        Ok(found)
    }
}

impl crate::profile::validate::ModuleCheck for PolicyBase {
    fn check(&self, module: &str) -> Result<Vec<(Option<usize>, String)>, String> {
        Ok(self
            .compile(module)?
            .into_iter()
            .map(|c| (c.line, c.message))
            .collect())
    }
}

/// `text` in an anonymous memory file named `name`.
fn memory_file(name: &str, text: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::{io::Write as _, os::fd::FromRawFd as _};
    let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    // SAFETY: a valid C string; the descriptor returned is ours alone.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nothing else.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    std::fs::File::from(fd.try_clone()?).write_all(text)?;
    Ok(fd)
}

/// Where a process (secilc, our child) reads our descriptor `fd`.
fn fd_path(fd: &std::os::fd::OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd as _;
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

/// A module's CIL as the store keeps it: bzip2 (libsemanage's default) or plain.
fn module_cil(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let raw = crate::files::read_regular(path, MAX_MODULE_CIL)?;
    if !raw.starts_with(b"BZh") {
        return Ok(raw);
    }
    let mut text = Vec::new();
    bzip2::read::BzDecoder::new(raw.as_slice())
        .take(MAX_MODULE_CIL + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_MODULE_CIL {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {} MiB of CIL", MAX_MODULE_CIL >> 20),
        ));
    }
    Ok(text)
}

/// A fresh directory only root can write (the module file semodule reads).
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let dir = base.join(format!(
            "syscribe-module-{}",
            crate::files::random_suffix()?
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no fresh temporary directory",
    ))
}

/// The compiler's lines that say something, each with the module line it names
/// (`… at /var/lib/selinux/…/<name>/cil:4`). Noise about the host's users is dropped.
pub fn complaints(stderr: &str, name: &str) -> Vec<Complaint> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("libsemanage.add_user:"))
        .filter(|l| *l != "semodule:  Failed!")
        .map(|l| {
            let (message, line) = match l.rfind(" at ") {
                Some(i) => {
                    let place = &l[i + 4..];
                    let line = place
                        .rsplit_once(':')
                        .filter(|(path, _)| name.is_empty() || path.contains(name))
                        .and_then(|(_, n)| n.parse().ok());
                    match line {
                        Some(line) => (l[..i].to_owned(), Some(line)),
                        None => (l.to_owned(), None),
                    }
                }
                None => (l.to_owned(), None),
            };
            Complaint { line, message }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_cil_block_names() {
        assert_eq!(module_name_problem("errorlogger"), None);
        assert_eq!(module_name_problem("web-app_2"), None);
        assert!(
            module_name_problem("web.app")
                .unwrap()
                .contains("namespace")
        );
        assert!(module_name_problem("1app").is_some());
        assert!(module_name_problem("a/b").is_some());
        assert!(module_name_problem("").is_some());
    }

    #[test]
    fn complaints_keep_their_module_line() {
        let stderr = "Failed to resolve blockinherit statement at /tmp/root/var/lib/selinux/default/tmp/modules/400/web/cil:2\nFailed to resolve AST\nsemodule:  Failed!\nlibsemanage.add_user: user sddm not in password file\n";
        assert_eq!(
            complaints(stderr, "web"),
            [
                Complaint {
                    line: Some(2),
                    message: "Failed to resolve blockinherit statement".into()
                },
                Complaint {
                    line: None,
                    message: "Failed to resolve AST".into()
                }
            ]
        );
    }
}
