//! The report as a terminal table or as JSON (HTML: `html`). Every value from the API goes
//! through [`terminal`] before it reaches the table: no name can move the cursor, colour the
//! screen or hide text.

use std::fmt::Write as _;

use super::{ContainerKind, ContainerRow, Report, SeccompSource, Totals};
use crate::audit::text::is_hidden;

/// `value` with every control or invisible character written as `\u{XXXX}` (and `\`
/// doubled, so an escape can never be forged).
pub fn terminal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_hidden(c) {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

pub fn json(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("the report serializes");
    text.push('\n');
    text
}

pub fn percent(coverage: Option<f64>) -> String {
    coverage.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}%"))
}

fn totals_line(t: &Totals) -> String {
    let mut line = format!(
        "{} containers, coverage {} (RuntimeDefault {}, Localhost {}, Unconfined {}); privileged {}, host namespaces {}, added capabilities {}, recorded but unused {}, denials: seccomp {} selinux {}",
        t.containers,
        percent(t.coverage),
        t.runtime_default,
        t.localhost,
        t.unconfined,
        t.privileged,
        t.host_namespaces,
        t.added_capabilities,
        t.recorded_unused,
        t.seccomp_denials,
        t.selinux_denials,
    );
    if t.localhost_not_installed > 0 {
        let _ = write!(
            line,
            ", Localhost profile not installed {}",
            t.localhost_not_installed
        );
    }
    if t.denials_unknown > 0 {
        let _ = write!(line, ", denials unknown for {}", t.denials_unknown);
    }
    line
}

/// The seccomp cell: `Localhost operator/x.json`, `RuntimeDefault (pod)`, `Unconfined
/// (default)`, `Unconfined (privileged; asked RuntimeDefault)`.
pub fn seccomp_cell(row: &ContainerRow) -> String {
    let s = &row.seccomp;
    let mut cell = s.mode.as_str().to_owned();
    if let Some(l) = &s.localhost_profile {
        cell.push(' ');
        cell.push_str(l);
    }
    match s.source {
        SeccompSource::Container => {}
        SeccompSource::Pod => cell.push_str(" (pod)"),
        SeccompSource::Default => cell.push_str(" (default)"),
        SeccompSource::Privileged => match &s.requested {
            Some(asked) => {
                let _ = write!(cell, " (privileged; asked {asked})");
            }
            None => cell.push_str(" (privileged)"),
        },
    }
    cell
}

pub fn kind_cell(kind: ContainerKind) -> &'static str {
    match kind {
        ContainerKind::Container => "",
        ContainerKind::Init => "init",
        ContainerKind::Ephemeral => "ephemeral",
    }
}

pub fn host_cell(row: &ContainerRow) -> String {
    let mut parts = Vec::new();
    if row.host_pid {
        parts.push("PID");
    }
    if row.host_network {
        parts.push("Network");
    }
    if row.host_ipc {
        parts.push("IPC");
    }
    parts.join(",")
}

pub fn denials_cell(row: &ContainerRow) -> String {
    match row.denials {
        None => "unknown".to_owned(),
        Some(d) if d.selinux == 0 => d.seccomp.to_string(),
        Some(d) => format!("{} (+{} selinux)", d.seccomp, d.selinux),
    }
}

fn table_rows(rows: &[ContainerRow]) -> Vec<[String; 11]> {
    rows.iter()
        .map(|r| {
            [
                terminal(&r.pod),
                terminal(&r.container),
                kind_cell(r.kind).to_owned(),
                terminal(r.node.as_deref().unwrap_or("-")),
                terminal(&seccomp_cell(r)),
                terminal(r.seccomp.node_status.as_deref().unwrap_or("")),
                terminal(r.selinux_type.as_deref().unwrap_or("")),
                if r.privileged { "yes" } else { "" }.to_owned(),
                terminal(&r.added_capabilities.join(",")),
                host_cell(r),
                terminal(&r.recorded_unused.join(",")),
            ]
        })
        .collect()
}

const HEADER: [&str; 11] = [
    "POD",
    "CONTAINER",
    "KIND",
    "NODE",
    "SECCOMP",
    "ON NODE",
    "SELINUX",
    "PRIV",
    "CAPS ADDED",
    "HOST",
    "RECORDED, UNUSED",
];

fn write_table(out: &mut String, rows: &[ContainerRow]) {
    let mut cells = table_rows(rows);
    // The denials column last.
    let denials: Vec<String> = rows.iter().map(denials_cell).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[&str], last: &str| {
        out.push_str("  ");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "{cell:<width$}  ");
        }
        out.push_str(last);
        out.push('\n');
    };
    line(out, &HEADER, "DENIALS");
    for (row, denied) in cells.iter_mut().zip(&denials) {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &refs, denied);
    }
}

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Assumed: kubelet seccompDefault {} (a container with no seccomp profile runs {}); privileged containers run Unconfined.",
        if report.assumptions.seccomp_default {
            "on"
        } else {
            "off"
        },
        if report.assumptions.seccomp_default {
            "RuntimeDefault"
        } else {
            "Unconfined"
        }
    );
    for ns in &report.namespaces {
        let _ = writeln!(
            out,
            "\nNamespace {}: {}",
            terminal(&ns.name),
            totals_line(&ns.totals)
        );
        if !ns.containers.is_empty() {
            write_table(&mut out, &ns.containers);
        }
    }
    let _ = writeln!(
        out,
        "\nCluster ({} namespaces): {}",
        report.namespaces.len(),
        totals_line(&report.cluster)
    );
    if !report.nodes.is_empty() {
        out.push_str("\nNodes:\n");
        for node in &report.nodes {
            let daemon = node.daemon.as_deref().map(terminal).unwrap_or_default();
            match &node.error {
                None => {
                    let _ = writeln!(
                        out,
                        "  {}: daemon {daemon}, metrics read",
                        terminal(&node.name)
                    );
                }
                Some(error) => {
                    let _ = writeln!(
                        out,
                        "  {}: {}denials unknown: {}",
                        terminal(&node.name),
                        if daemon.is_empty() {
                            String::new()
                        } else {
                            format!("daemon {daemon}, ")
                        },
                        terminal(error)
                    );
                }
            }
        }
    }
    if !report.profiles.is_empty() {
        out.push_str("\nSeccompProfiles on nodes:\n");
        for profile in &report.profiles {
            let states: Vec<String> = profile
                .nodes
                .iter()
                .map(|(node, state)| format!("{}={}", terminal(node), terminal(state)))
                .collect();
            let _ = writeln!(
                out,
                "  {}{}: {}",
                terminal(&profile.name),
                if profile.recorded { " (recorded)" } else { "" },
                if states.is_empty() {
                    "no node status".to_owned()
                } else {
                    states.join(" ")
                }
            );
        }
    }
    out
}
