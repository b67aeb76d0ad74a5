//! Files written as root where others may have planted links, and files read that others
//! wrote.
//!
//! Writes go through a directory handle ([`Dir`]): the directory is opened once, each
//! component below a trusted base without following a link, and every operation after that is
//! relative to the handle (`openat`, `renameat`, `unlinkat`), so a link swapped in later changes
//! nothing. A file is replaced by renaming a temporary file over it; the temporary name is
//! unpredictable and created with `O_EXCL|O_NOFOLLOW`, so nothing planted at it is followed.
//! Only regular files are replaced: a link, a device, a FIFO or a directory at the target is
//! refused with a message that says which.
//!
//! Reads ([`read_regular`]) take regular files only (`/dev/zero` and FIFOs never end) and at
//! most a stated size.

use std::{
    ffi::CString,
    fs::File,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    },
    path::{Component, Path, PathBuf},
};

/// A directory opened once; what is done in it is relative to this handle.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn c_name(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} holds a NUL byte"),
        )
    })
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// What a file type is called in a refusal.
fn type_name(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFDIR => "a directory",
        libc::S_IFBLK => "a block device",
        libc::S_IFCHR => "a character device",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        _ => "not a regular file",
    }
}

fn not_regular(path: &Path, mode: libc::mode_t, doing: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {}, not a regular file; refusing to {doing} it",
            path.display(),
            type_name(mode)
        ),
    )
}

/// 16 hex digits from the kernel's random source.
pub(crate) fn random_suffix() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for its length; getrandom writes at most that many bytes.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(bytes)
        .to_be_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

impl Dir {
    /// Opens the directory at `path`, following links in it (the caller chose the path).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self {
            fd: file.into(),
            path: path.to_owned(),
        })
    }

    /// Opens `base` (trusted: links in it are followed), then each component of `below`
    /// without following a link, creating missing ones (mode 0755) when `create`. A link
    /// anywhere below `base` is refused: what is done there must stay under `base`.
    pub fn open_below(base: &Path, below: &Path, create: bool) -> io::Result<Self> {
        if create {
            std::fs::create_dir_all(base)?;
        }
        let mut dir = Self::open(base)?;
        for component in below.components() {
            let Component::Normal(name) = component else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} must be a relative path of plain names", below.display()),
                ));
            };
            let name = name.to_str().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "directory names are UTF-8")
            })?;
            dir = dir.subdir(name, create)?;
        }
        Ok(dir)
    }

    /// The directory `name` in this one, not followed if it is a link (refused).
    pub fn subdir(&self, name: &str, create: bool) -> io::Result<Self> {
        let c = c_name(name)?;
        let path = self.path.join(name);
        if create {
            // SAFETY: a valid directory fd and a NUL-terminated name.
            let made = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o755) };
            if made < 0 {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::AlreadyExists {
                    return Err(err);
                }
            }
        }
        // SAFETY: as above; the returned fd is owned below.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_RDONLY,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // O_NOFOLLOW on a link: ELOOP; O_DIRECTORY on something else: ENOTDIR.
            if matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                let mode = self.mode_of(name)?.unwrap_or(0);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is {}, not a directory; refusing to work through it",
                        path.display(),
                        type_name(mode)
                    ),
                ));
            }
            return Err(err);
        }
        // SAFETY: openat returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The type bits of `name` (not following a link), or None when there is nothing.
    fn mode_of(&self, name: &str) -> io::Result<Option<libc::mode_t>> {
        let c = c_name(name)?;
        // SAFETY: stat is plain data; fstatat fills it or fails.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, NUL-terminated name, a stat buffer of the right type.
        let ret = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(err)
            };
        }
        Ok(Some(stat.st_mode & libc::S_IFMT))
    }

    /// Fails unless `name` is absent or a regular file (never a link).
    pub fn check_replaceable(&self, name: &str) -> io::Result<()> {
        match self.mode_of(name)? {
            None => Ok(()),
            Some(libc::S_IFREG) => Ok(()),
            Some(mode) => Err(not_regular(&self.path.join(name), mode, "replace")),
        }
    }

    /// A new temporary file that [`Staged::commit`] renames to `name`; created now, so a
    /// directory that cannot be written is known before any work is done.
    pub fn stage(&self, name: &str) -> io::Result<Staged<'_>> {
        self.check_replaceable(name)?;
        let mut tries = 0;
        loop {
            let temporary = format!(".{name}.{}.tmp", random_suffix()?);
            let c = c_name(&temporary)?;
            // SAFETY: valid fd, NUL-terminated name; the fd is owned below.
            let fd = unsafe {
                libc::openat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    0o644 as libc::c_uint,
                )
            };
            if fd < 0 {
                let err = io::Error::last_os_error();
                tries += 1;
                if err.kind() == io::ErrorKind::AlreadyExists && tries < 8 {
                    continue;
                }
                return Err(err);
            }
            // SAFETY: openat returned a new fd that nothing else owns.
            let file = unsafe { File::from_raw_fd(fd) };
            return Ok(Staged {
                dir: self,
                name: name.to_owned(),
                temporary,
                file: Some(file),
            });
        }
    }

    /// Replaces (or creates) `name` with `bytes` atomically: readers see the old or the new
    /// content. With `durable`, data and rename are synced first.
    pub fn write_atomically(&self, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
        self.stage(name)?.commit(bytes, durable)
    }

    /// Removes the file `name` (a link is removed, never followed); false when there was none.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        let c = c_name(name)?;
        // SAFETY: valid fd and NUL-terminated name.
        match cvt(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }) {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The content of the regular file `name` (not through a link), at most `cap` bytes;
    /// None when there is no such file.
    pub fn read(&self, name: &str, cap: u64) -> io::Result<Option<Vec<u8>>> {
        let c = c_name(name)?;
        // SAFETY: valid fd, NUL-terminated name; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::NotFound {
                return Ok(None);
            }
            if err.raw_os_error() == Some(libc::ELOOP) {
                return Err(not_regular(&self.path.join(name), libc::S_IFLNK, "read"));
            }
            return Err(err);
        }
        // SAFETY: openat returned a new fd that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        read_capped(file, &self.path.join(name), cap).map(Some)
    }

    /// The names in this directory.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let fd = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let mut names = Vec::new();
        for entry in std::fs::read_dir(fd)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn sync(&self) {
        // SAFETY: a valid fd; fsync has no memory effects.
        let _ = unsafe { libc::fsync(self.fd.as_raw_fd()) };
    }
}

/// A temporary file waiting to replace `name`; removed if dropped uncommitted.
#[derive(Debug)]
pub struct Staged<'d> {
    dir: &'d Dir,
    name: String,
    temporary: String,
    file: Option<File>,
}

impl Staged<'_> {
    /// Where the file will be.
    pub fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    pub fn commit(mut self, bytes: &[u8], durable: bool) -> io::Result<()> {
        let mut file = self.file.take().expect("a staged file is committed once");
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        // A link or device put at the name since staging is refused, not replaced.
        self.dir.check_replaceable(&self.name)?;
        let from = c_name(&self.temporary)?;
        let to = c_name(&self.name)?;
        let dir = self.dir.fd.as_raw_fd();
        // SAFETY: valid fds and NUL-terminated names.
        cvt(unsafe { libc::renameat(dir, from.as_ptr(), dir, to.as_ptr()) })?;
        self.temporary.clear();
        if durable {
            self.dir.sync();
        }
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.temporary.is_empty() {
            let _ = self.dir.remove(&self.temporary);
        }
    }
}

/// Replaces `path` atomically: its directory (created if missing) is opened once, a link or
/// anything else than a regular file at `path` is refused.
pub fn write_atomically(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let (dir, name) = split(path)?;
    std::fs::create_dir_all(&dir)?;
    Dir::open(&dir)?.write_atomically(&name, bytes, durable)
}

/// The directory and the file name of `path`.
pub fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = match path.file_name() {
        Some(name)
            if path
                .components()
                .next_back()
                .is_some_and(|c| matches!(c, Component::Normal(_))) =>
        {
            name
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            ));
        }
    };
    let name = std::str::from_utf8(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file names are UTF-8"))?
        .to_owned();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    Ok((dir, name))
}

/// Reads the regular file at `path` (links followed: the caller named it), at most `cap`
/// bytes: anything else (a device, a FIFO, a directory) or anything longer is an error that
/// says so.
pub fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer before it is refused.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    read_capped(file, path, cap)
}

/// [`read_regular`] as text.
pub fn read_regular_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, cap)?).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not UTF-8 text (byte {})",
                path.display(),
                err.utf8_error().valid_up_to()
            ),
        )
    })
}

fn read_capped(file: File, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        use std::os::unix::fs::MetadataExt as _;
        return Err(not_regular(path, meta.mode() as libc::mode_t, "read"));
    }
    if meta.len() > cap {
        return Err(too_big(path, cap));
    }
    // Back to blocking reads (a regular file never blocks anyway).
    // SAFETY: F_SETFL with plain flags on a valid fd.
    unsafe {
        let flags = libc::fcntl(file.as_fd().as_raw_fd(), libc::F_GETFL);
        libc::fcntl(
            file.as_fd().as_raw_fd(),
            libc::F_SETFL,
            flags & !libc::O_NONBLOCK,
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: still at most cap bytes.
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big(path, cap));
    }
    Ok(bytes)
}

fn too_big(path: &Path, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is larger than {} bytes, the most read from such a file",
            path.display(),
            cap
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("syscribe-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = scratch("replace");
        let path = dir.join("sub/a.json");
        write_atomically(&path, b"one", false).unwrap();
        write_atomically(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.join("sub")).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_or_device_at_the_target_is_refused_and_left_alone() {
        let dir = scratch("target");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        symlink(&victim, dir.join("out.json")).unwrap();
        let err = write_atomically(&dir.join("out.json"), b"evil", false).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(
            std::fs::symlink_metadata(dir.join("out.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        symlink("/dev/null", dir.join("dev.json")).unwrap();
        let err = write_atomically(&dir.join("dev.json"), b"x", false).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = write_atomically(Path::new("/dev/null"), b"x", false).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_unpredictable_and_never_followed() {
        let dir = scratch("temporary");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // The old scheme's name, planted: now irrelevant.
        symlink(
            &victim,
            dir.join(format!(".a.json.{}.tmp", std::process::id())),
        )
        .unwrap();
        let handle = Dir::open(&dir).unwrap();
        let one = handle.stage("a.json").unwrap();
        let two = handle.stage("a.json").unwrap();
        assert_ne!(one.temporary, two.temporary);
        assert_eq!(one.temporary.len(), ".a.json.".len() + 16 + ".tmp".len());
        drop(two);
        one.commit(b"new", false).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(dir.join("a.json")).unwrap(), b"new");
        // Dropped uncommitted: nothing stays.
        let names = handle.names().unwrap();
        assert_eq!(names.len(), 3, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_linked_directory_below_the_base_is_refused() {
        let base = scratch("below");
        let elsewhere = scratch("elsewhere");
        std::fs::create_dir(base.join("seccomp")).unwrap();
        symlink(&elsewhere, base.join("seccomp/operator")).unwrap();
        let err = Dir::open_below(&base, Path::new("seccomp/operator"), true).unwrap_err();
        assert!(
            err.to_string()
                .contains("is a symbolic link, not a directory"),
            "{err}"
        );
        std::fs::remove_file(base.join("seccomp/operator")).unwrap();
        let dir = Dir::open_below(&base, Path::new("seccomp/operator"), true).unwrap();
        dir.write_atomically("p.json", b"{}", true).unwrap();
        assert!(base.join("seccomp/operator/p.json").is_file());
        assert!(dir.remove("p.json").unwrap());
        assert!(!dir.remove("p.json").unwrap());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        std::fs::remove_dir_all(&base).unwrap();
        std::fs::remove_dir_all(&elsewhere).unwrap();
    }

    #[test]
    fn reads_take_regular_files_up_to_a_cap() {
        let dir = scratch("read");
        let err = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        let fifo = dir.join("fifo");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(&fifo, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        std::fs::write(dir.join("big"), vec![b'a'; 1001]).unwrap();
        let err = read_regular(&dir.join("big"), 1000).unwrap_err();
        assert!(err.to_string().contains("larger than 1000 bytes"), "{err}");
        assert_eq!(read_regular(&dir.join("big"), 1001).unwrap().len(), 1001);
        let handle = Dir::open(&dir).unwrap();
        symlink(dir.join("big"), dir.join("link")).unwrap();
        let err = handle.read("link", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(handle.read("absent", 10).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
