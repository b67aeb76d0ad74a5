//! The judge of a recorded profile: the same command, run under it by `syscribe run`, exits 0
//! with the same output; with one needed syscall taken out, the same command fails: it exits
//! non-zero or prints something else (busybox `uname` denied uname(2) prints garbage and exits 0).

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
};

use syscribe_tests::*;

/// Records `command`, replays it under the profile, then under the profile minus `needed`.
fn replay(tag: &str, command: &[&str], needed: &str) {
    let dir = TempDir::new(tag);
    let rec = record(&dir, tag, command);
    assert!(
        rec.output.status.success(),
        "recording {tag} failed: {}",
        stderr(&rec.output)
    );
    let expected = stdout(&rec.output);
    assert!(
        !expected.is_empty(),
        "{tag}: the command printed nothing, so the comparison proves nothing"
    );

    let replayed = run_under(&rec.profile_path, command);
    assert!(
        replayed.status.success(),
        "{tag}: replay under its own profile failed ({}): {}",
        replayed.status,
        stderr(&replayed)
    );
    assert_eq!(
        stdout(&replayed),
        expected,
        "{tag}: replay printed something else"
    );

    let crippled = without_syscall(&dir, &rec.profile, needed);
    let denied = run_under(&crippled, command);
    assert!(
        !denied.status.success() || stdout(&denied) != expected,
        "{tag}: still succeeded, same output, without {needed}: enforcement is not real"
    );
    assert_no_leftovers();
}

#[test]
fn busybox_uname() {
    replay("uname", &["/bin/busybox", "uname", "-a"], "uname");
}

#[test]
fn busybox_ls() {
    replay("ls", &["/bin/busybox", "ls", "-l", "/usr"], "openat");
}

#[test]
fn busybox_sha256sum() {
    replay(
        "sha256sum",
        &["/bin/busybox", "sha256sum", "/bin/busybox"],
        "read",
    );
}

#[test]
fn busybox_shell_with_file_io() {
    let dir = TempDir::new("shell-files");
    let script = format!(
        "set -e; cd {}; echo hello > f; /bin/busybox cat f; /bin/busybox cp f g; /bin/busybox wc -c g; /bin/busybox rm f g",
        dir.path().display()
    );
    replay("shell", &["/bin/busybox", "sh", "-c", &script], "openat");
}

#[test]
fn python_sockets_on_loopback() {
    let script = "import socket\n\
        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
        c = socket.create_connection(s.getsockname()); a, _ = s.accept()\n\
        c.sendall(b'ping over loopback'); print(a.recv(64).decode())\n";
    replay("python", &["/usr/bin/python3", "-c", script], "socket");
}

#[test]
fn curl_against_a_loopback_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hello", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = "hello from the loopback server\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    replay(
        "curl",
        &["/usr/bin/curl", "-sS", "--noproxy", "*", &url],
        "connect",
    );
}
