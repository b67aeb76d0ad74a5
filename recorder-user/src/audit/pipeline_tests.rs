use super::*;

#[derive(Default)]
struct Collect(Vec<Value>);
impl Sink for Collect {
    fn enriched(&mut self, line: &Enriched) -> std::io::Result<()> {
        self.0.push(serde_json::to_value(line).unwrap());
        Ok(())
    }
    fn fields(&mut self, line: &Map<String, Value>) -> std::io::Result<()> {
        self.0.push(Value::Object(line.clone()));
        Ok(())
    }
}

fn pipeline(metrics: Option<Arc<Mutex<Metrics>>>) -> Pipeline {
    let none = std::path::PathBuf::from("/nonexistent");
    Pipeline::new(
        Options {
            node: Some("n".into()),
            filters: Vec::new(),
            aggregate: None,
            metrics,
            per_source_rate: 0,
            per_source_burst: 1,
            avc_tap: None,
        },
        ProcResolver::new(none.clone(), none.clone(), None),
        RuntimeNames::new(vec![none]),
    )
}

const AVC: &str = r#"type=AVC msg=audit(1795703105.844:31): avc:  denied  { read write } for  pid=4242 comm="cat" name="secret" dev="sda1" ino=12 scontext=system_u:system_r:container_t:s0:c1,c2 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0"#;
const SYSCALL: &str = r#"type=SYSCALL msg=audit(1795703105.844:31): arch=c000003e syscall=257 success=no exit=-13 pid=4242 comm="cat" exe="/usr/bin/cat" key=(null)"#;

#[test]
fn an_avc_is_completed_by_its_syscall_record() {
    let mut p = pipeline(None);
    let mut out = Collect::default();
    p.line(AVC, &mut out).unwrap();
    assert!(out.0.is_empty(), "waits for its SYSCALL record");
    p.line(SYSCALL, &mut out).unwrap();
    assert_eq!(out.0.len(), 1);
    let line = &out.0[0];
    assert_eq!(line["type"], "selinux");
    assert_eq!(line["executable"], "/usr/bin/cat");
    assert_eq!(line["syscallName"], "openat");
    assert_eq!(line["perm"], "read write");
    assert_eq!(p.counts.grouped, 1);
}

/// The tap takes nothing from what is printed: the same lines with and without it (the
/// AVC here is of no pod, so nothing goes to recordings either).
#[test]
fn the_avc_tap_leaves_the_output_unchanged() {
    let mut plain = pipeline(None);
    let mut tapped = pipeline(None);
    let (tap, mut rx) = AvcTap::channel(4);
    tapped.options.avc_tap = Some(tap);
    let (mut a, mut b) = (Collect::default(), Collect::default());
    for line in [AVC, SYSCALL] {
        plain.line(line, &mut a).unwrap();
        tapped.line(line, &mut b).unwrap();
    }
    assert_eq!(a.0.len(), 1);
    assert_eq!(a.0, b.0);
    assert!(rx.try_recv().is_err(), "no pod: not for a recording");
}

#[test]
fn an_avc_without_syscall_record_goes_out_on_eoe_on_time_or_at_the_end() {
    let mut p = pipeline(None);
    let mut out = Collect::default();
    p.line(AVC, &mut out).unwrap();
    p.line("type=EOE msg=audit(1795703105.844:31): ", &mut out)
        .unwrap();
    assert_eq!(out.0.len(), 1, "EOE ends the event");
    assert!(out.0[0].get("executable").is_none(), "unknown: absent");

    p.line(&AVC.replace(":31)", ":32)"), &mut out).unwrap();
    std::thread::sleep(Pipeline::GROUP_WAIT);
    p.tick(&mut out).unwrap();
    assert_eq!(out.0.len(), 2, "waited long enough");

    p.line(&AVC.replace(":31)", ":33)"), &mut out).unwrap();
    p.finish(&mut out).unwrap();
    assert_eq!(out.0.len(), 3, "the end of the input");
    // A SYSCALL record of another event completes nothing.
    p.line(AVC, &mut out).unwrap();
    p.line(&SYSCALL.replace(":31)", ":99)"), &mut out).unwrap();
    assert_eq!(out.0.len(), 3);
}

#[test]
fn waiting_is_bounded() {
    let mut p = pipeline(None);
    // Only the bound may let records out here, however slow the machine (1027 lines once
    // took longer than the 50 ms wait under load, and the expired ones went out early).
    p.group_wait = Duration::from_secs(3600);
    let mut out = Collect::default();
    for serial in 0..Pipeline::MAX_WAITING + 3 {
        p.line(&AVC.replace(":31)", &format!(":{serial})")), &mut out)
            .unwrap();
    }
    assert_eq!(out.0.len(), 3);
    assert_eq!(p.counts.group_overflow, 3);
}

#[test]
fn a_storm_source_is_summarised_while_another_prints() {
    let mut p = pipeline(None);
    p.fair = FairShare::new(10, 20);
    let mut out = Collect::default();
    let line = |serial: u64, exe: &str| {
        format!(
            r#"type=SECCOMP msg=audit(1795703105.{:03}:{serial}): pid=1 comm="x" exe="{exe}" sig=0 arch=c000003e syscall=110 compat=0 ip=0x1 code=0x7ffc0000"#,
            serial / 100
        )
    };
    // 100 000 lines within 1 s from the storm, one every 10 000 from the quiet one.
    for serial in 0..100_000 {
        p.line(&line(serial, "/storm"), &mut out).unwrap();
        if serial % 10_000 == 0 {
            p.line(&line(serial, "/quiet"), &mut out).unwrap();
        }
    }
    p.finish(&mut out).unwrap();
    let of = |exe: &str| out.0.iter().filter(|l| l["executable"] == exe).count() as u64;
    assert_eq!(of("/quiet"), 10, "every quiet line printed");
    let summaries: Vec<&Value> = out.0.iter().filter(|l| l["type"] == "summary").collect();
    assert!(summaries.iter().all(|s| s["source"] == "executable /storm"));
    let summarised: u64 = summaries.iter().map(|s| s["count"].as_u64().unwrap()).sum();
    assert!(of("/storm") <= 30, "{}", of("/storm"));
    assert_eq!(of("/storm") + summarised, 100_000);
    assert_eq!(p.suppressed(), summarised);
}

#[test]
fn metrics_count_emitted_lines() {
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let mut p = pipeline(Some(metrics.clone()));
    let mut out = Collect::default();
    let seccomp = r#"type=SECCOMP msg=audit(1795703105.844:2): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=1 comm="sc" exe="/tmp/sc" sig=0 arch=c000003e syscall=162 compat=0 ip=0x1 code=0x7ffc0000"#;
    p.line(seccomp, &mut out).unwrap();
    p.line(seccomp, &mut out).unwrap();
    p.publish(SourceCounts {
        lost: 7,
        ..SourceCounts::default()
    });
    let text = metrics.lock().unwrap().render();
    assert!(
        text.contains(r#"executable="/tmp/sc",syscall="sync"} 2"#),
        "{text}"
    );
    assert!(text.contains("syscribe_enricher_lost_total 7"), "{text}");
}
