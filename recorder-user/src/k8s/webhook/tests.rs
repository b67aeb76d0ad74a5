use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    time::Instant,
};

use super::review::{cut, json_values};
use super::*;

fn request(operation: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "security-profiles-operator.x-k8s.io", "version": "v1", "kind": object["kind"]},
            "resource": {"group": "security-profiles-operator.x-k8s.io", "version": "v1", "resource": "seccompprofiles"},
            "name": object["metadata"]["name"], "operation": operation,
            "object": object,
        }
    }))
    .unwrap()
}

fn seccomp(names: &[&str], default: &str) -> Value {
    json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SeccompProfile",
           "metadata": {"name": "web", "uid": "u1", "managedFields": []},
           "spec": {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"action": "SCMP_ACT_ALLOW", "names": names}]},
           "status": {}})
}

#[test]
fn a_valid_profile_is_allowed() {
    let answer = review(
        &mut Validator::default(),
        &request("CREATE", seccomp(&["read"], "SCMP_ACT_ERRNO")),
    )
    .unwrap()
    .0;
    assert_eq!(
        answer,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true}})
    );
}

#[test]
fn a_raw_selinux_profile_is_judged_down_to_its_parenthesis() {
    let raw = |policy: &str| {
        json!({"apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "RawSelinuxProfile",
               "metadata": {"name": "logger"}, "spec": {"policy": policy}})
    };
    let broken = "(blockinherit container)\n(allow process var_log_t (dir (search))\n(allow process var_log_t (file (read)))\n";
    let answer = review(&mut Validator::default(), &request("CREATE", raw(broken)))
        .unwrap()
        .0;
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(
        answer["response"]["status"]["message"],
        "RawSelinuxProfile \"logger\" is invalid: spec.policy: policy line 2:1: this '(' is never \
         closed; the statement at 3:1 starts inside it — a ')' is probably missing before it"
    );
    let fixed = broken.replace("(search))", "(search)))");
    let answer = review(&mut Validator::default(), &request("CREATE", raw(&fixed)))
        .unwrap()
        .0;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[test]
fn an_invalid_profile_is_denied_with_every_problem() {
    let answer = review(
        &mut Validator::default(),
        &request("UPDATE", seccomp(&["raed", "wirte"], "SCMP_ACT_ERRNO")),
    )
    .unwrap()
    .0;
    let response = &answer["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(
        response["status"]["message"],
        "SeccompProfile \"web\" is invalid: \
         spec.syscalls[0].names[0]: unknown syscall \"raed\" on SCMP_ARCH_X86_64 (did you mean \"read\"?); \
         spec.syscalls[0].names[1]: unknown syscall \"wirte\" on SCMP_ARCH_X86_64 (did you mean \"write\"?)"
    );
}

#[test]
fn warnings_go_back_as_admission_warnings() {
    let answer = review(
        &mut Validator::default(),
        &request("CREATE", seccomp(&["read"], "SCMP_ACT_ALLOW")),
    )
    .unwrap()
    .0;
    assert_eq!(answer["response"]["allowed"], true);
    let warnings = answer["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("confines nothing")),
        "{warnings:?}"
    );
}

#[test]
fn metadata_updates_of_an_old_invalid_profile_pass() {
    let invalid = seccomp(&["raed"], "SCMP_ACT_ERRNO");
    let mut body: Value = serde_json::from_slice(&request("UPDATE", invalid.clone())).unwrap();
    body["request"]["oldObject"] = invalid;
    let answer = review(
        &mut Validator::default(),
        &serde_json::to_vec(&body).unwrap(),
    )
    .unwrap()
    .0;
    assert_eq!(
        answer["response"]["allowed"], true,
        "finalizer removal is not blocked"
    );
    body["request"]["oldObject"]["spec"]["defaultAction"] = json!("SCMP_ACT_LOG");
    let answer = review(
        &mut Validator::default(),
        &serde_json::to_vec(&body).unwrap(),
    )
    .unwrap()
    .0;
    assert_eq!(
        answer["response"]["allowed"], false,
        "a spec change is judged"
    );
}

#[test]
fn deletes_and_other_kinds_pass_and_garbage_is_a_bad_request() {
    let answer = review(
        &mut Validator::default(),
        &request("DELETE", seccomp(&["raed"], "SCMP_ACT_ERRNO")),
    )
    .unwrap()
    .0;
    assert_eq!(answer["response"]["allowed"], true);
    let mut validator = Validator::default();
    assert!(matches!(
        review(&mut validator, b"{"),
        Err(ReviewError::Json(_))
    ));
    assert_eq!(
        review(
            &mut validator,
            br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#
        ),
        Err(ReviewError::NotAReview(
            "apiVersion \"admission.k8s.io/v1beta1\", kind \"AdmissionReview\"".into()
        ))
    );
    assert_eq!(
        review(
            &mut validator,
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}"#
        ),
        Err(ReviewError::NoUid)
    );
}

#[test]
fn a_denial_lists_the_first_errors_and_says_how_many_more_there_are() {
    let names: Vec<String> = (0..1000).map(|i| format!("bad{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (answer, omitted) = review(
        &mut Validator::default(),
        &request("CREATE", seccomp(&names, "SCMP_ACT_ERRNO")),
    )
    .unwrap();
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(message.matches("unknown syscall").count(), MAX_ERRORS);
    assert!(
        message.contains("spec.syscalls[0].names[49]: unknown syscall \"bad49\""),
        "{message}"
    );
    assert!(!message.contains("\"bad50\""), "{message}");
    assert!(
        message.ends_with("; and 950 more problems"),
        "{}",
        &message[message.len() - 100..]
    );
    assert_eq!(omitted, 950);
}

/// Hostile text (quotes, control characters, non-ASCII) in every line, lines far over
/// MAX_LINE and more of them than listed: the answer stays within MAX_RESPONSE and each cut
/// line says by how much.
#[test]
fn an_answer_stays_within_max_response_whatever_its_lines() {
    let hostile = "\"\u{1b}[31mé";
    let names: Vec<&str> = std::iter::repeat_n(hostile, 200).collect();
    let mut object = seccomp(&names, "SCMP_ACT_ALLOW");
    let long = hostile.repeat(600);
    object["metadata"]["name"] = json!(long);
    // Unknown fields: lines that hold their (long) names.
    for i in 0..30 {
        object["spec"][format!("{long}{i}")] = json!(1);
    }
    let body = request("CREATE", object);
    let (answer, omitted) = review(&mut Validator::default(), &body).unwrap();
    let bytes = serde_json::to_vec(&answer).unwrap();
    assert!(
        bytes.len() <= MAX_RESPONSE,
        "{} bytes for a {}-byte review",
        bytes.len(),
        body.len()
    );
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(!message.contains('\u{1b}'), "control characters escaped");
    assert!(message.contains("\\u{1b}[31m"), "{}", &message[..200]);
    assert!(
        message.contains(" more bytes)"),
        "cut lines say so: {message}"
    );
    assert!(message.ends_with(" more problems"), "{message}");
    assert!(omitted > 0);
}

#[test]
fn cut_keeps_short_lines_and_cuts_long_ones_on_a_character_boundary() {
    assert_eq!(cut("spec: fine"), "spec: fine");
    assert_eq!(cut("a\u{7}b\n"), "a\\u{7}b\\n");
    let long = "é".repeat(MAX_LINE); // 2 bytes each
    let line = cut(&long);
    let (kept, said) = line.split_once('…').unwrap();
    assert_eq!(kept.len(), MAX_LINE);
    assert_eq!(said, format!(" ({} more bytes)", long.len() - MAX_LINE));
}

#[test]
fn a_long_uid_is_a_bad_request() {
    let mut body: Value =
        serde_json::from_slice(&request("CREATE", seccomp(&["read"], "SCMP_ACT_ERRNO"))).unwrap();
    body["request"]["uid"] = json!("u".repeat(1000));
    assert_eq!(
        review(
            &mut Validator::default(),
            &serde_json::to_vec(&body).unwrap()
        ),
        Err(ReviewError::LongUid { len: 1000 })
    );
}

// The server over an in-memory stream, with short deadlines.

const SHORT: Duration = Duration::from_millis(300);

fn server(deadlines: Deadlines) -> Arc<Shared> {
    let limits = Limits {
        max_connections: 4,
        max_connections_per_peer: 4,
        deadlines,
        ..Limits::default()
    };
    Arc::new(Shared::new(limits, Validator::default(), None))
}

fn short() -> Deadlines {
    Deadlines {
        first_byte: SHORT,
        handshake: SHORT,
        head: SHORT,
        request: SHORT * 2,
        write: SHORT,
        idle: SHORT * 3,
        linger: SHORT,
    }
}

/// Serves one connection whose client side is returned; `buffer`: the pipe's capacity.
fn connect(
    shared: &Arc<Shared>,
    buffer: usize,
) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server_side) = tokio::io::duplex(buffer);
    let conn = Conn::admit(shared, "10.0.0.1:40000".parse().unwrap()).unwrap();
    let shared = shared.clone();
    let task = tokio::spawn(async move { serve_connection(server_side, &shared, &conn).await });
    (client, task)
}

/// Everything the server sends until it closes, and how long that took.
async fn until_closed(client: &mut tokio::io::DuplexStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut out))
        .await
        .expect("the server closes")
        .unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn metric(shared: &Shared, line_start: &str) -> u64 {
    let text = shared.counters.render();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in {text}"))
}

#[tokio::test]
async fn a_head_of_max_head_is_read_and_one_byte_more_is_refused_with_431() {
    let shared = server(short());
    for (size, status) in [(MAX_HEAD, "HTTP/1.1 404 "), (MAX_HEAD + 1, "HTTP/1.1 431 ")] {
        let (mut client, task) = connect(&shared, 64 * 1024);
        let start = "GET /nothing HTTP/1.1\r\nConnection: close\r\nX-Pad: ";
        let pad = "a".repeat(size - start.len() - 4);
        client
            .write_all(format!("{start}{pad}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (answer, _) = until_closed(&mut client).await;
        assert!(answer.starts_with(status), "{size}: {answer}");
        task.await.unwrap();
    }
    assert_eq!(
        metric(
            &shared,
            "syscribe_webhook_requests_refused_total{reason=\"head_too_large\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_first_byte_and_a_trickled_head_after_head()
{
    let shared = server(short());
    let (mut silent, _) = connect(&shared, 4096);
    let (answer, took) = until_closed(&mut silent).await;
    assert_eq!(answer, "");
    assert!(took >= SHORT && took < SHORT * 3, "{took:?}");
    assert_eq!(
        metric(
            &shared,
            "syscribe_webhook_connections_closed_total{reason=\"first_byte_timeout\"}"
        ),
        1
    );

    let (mut trickle, _) = connect(&shared, 4096);
    let started = Instant::now();
    let mut closed = false;
    // A byte every 50 ms: each read is in time, the head never is.
    for byte in b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .cycle()
        .take(200)
    {
        if trickle.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < SHORT * 3, "{:?}", started.elapsed());
    assert_eq!(
        metric(
            &shared,
            "syscribe_webhook_connections_closed_total{reason=\"head_timeout\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_body_over_max_body_is_refused_from_its_content_length_before_it_is_sent() {
    let shared = server(short());
    let (mut client, task) = connect(&shared, 4096);
    let head = format!(
        "POST /validate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    client.write_all(head.as_bytes()).await.unwrap();
    // No body sent: the answer comes anyway.
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.contains("(1048577 bytes) is over 1024 KiB"),
        "{answer}"
    );
    // What the client sends meanwhile is taken and dropped (no reset), then it closes.
    client.write_all(&vec![b'x'; 64 * 1024]).await.unwrap();
    task.await.unwrap();
    assert_eq!(
        metric(
            &shared,
            "syscribe_webhook_requests_refused_total{reason=\"body_too_large\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_its_answer_is_closed_after_write() {
    let shared = server(short());
    // A pipe that holds 256 bytes: /metrics does not fit.
    let (mut client, task) = connect(&shared, 256);
    client
        .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("closed without the answer taken")
        .unwrap();
    assert_eq!(
        metric(
            &shared,
            "syscribe_webhook_connections_closed_total{reason=\"write_timeout\"}"
        ),
        1
    );
}

#[tokio::test]
async fn kept_alive_reviews_are_answered_and_the_slot_is_given_back() {
    let shared = server(short());
    let (mut client, task) = connect(&shared, 64 * 1024);
    let body = request("CREATE", seccomp(&["read"], "SCMP_ACT_ERRNO"));
    for _ in 0..2 {
        let head = format!(
            "POST /validate HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(&body).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = client.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.contains("\"allowed\":true"), "{answer}");
    }
    let (_, took) = until_closed(&mut client).await;
    assert!(
        took >= SHORT * 2,
        "idle, not first-byte, after a request: {took:?}"
    );
    task.await.unwrap();
    assert_eq!(shared.slots.lock().unwrap().len(), 0);
    assert_eq!(
        metric(
            &shared,
            "syscribe_webhook_connections_closed_total{reason=\"idle\"}"
        ),
        1
    );
}

#[test]
fn json_values_counts_every_value_and_key_but_nothing_inside_strings() {
    assert_eq!(json_values(br#""a""#), 1);
    assert_eq!(json_values(br#"["a","b",[]]"#), 5);
    assert_eq!(json_values(br#"{"k":1,"l":{}}"#), 6);
    assert_eq!(json_values(br#"["[,:{\"", "\\"]"#), 3);
}

#[test]
fn a_review_of_more_than_max_values_is_denied_as_too_large_to_check() {
    let names = vec!["a"; MAX_VALUES];
    let (answer, _) = review(
        &mut Validator::default(),
        &request("CREATE", seccomp(&names, "SCMP_ACT_ERRNO")),
    )
    .unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "SeccompProfile \"web\" is too large to check: its review holds 131133 JSON values"
        ),
        "{message}"
    );
    assert!(message.ends_with("more than 131072"), "{message}");
    // Deletes still pass unchecked.
    let (answer, _) = review(
        &mut Validator::default(),
        &request("DELETE", seccomp(&names, "SCMP_ACT_ERRNO")),
    )
    .unwrap();
    assert_eq!(answer["response"]["allowed"], true);
}
