//! The report as one self-contained HTML page: inline CSS and SVG, no script, no external
//! asset. Every value from the API is escaped ([`escape`]): a pod named `<script>` is text.

use std::fmt::Write as _;

use super::{
    Report, SeccompMode, Totals,
    render::{denials_cell, host_cell, kind_cell, percent, seccomp_cell, terminal},
};

/// Text for HTML content and attribute values: `& < > " '` as entities, and the characters
/// that could hide or reorder text written as `\u{XXXX}` (as in the terminal).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in terminal(value).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.Unconfined{background:#fde2e1}.RuntimeDefault{background:#fff4d6}.Localhost{background:#dff3e4}
.Installed{background:#dff3e4}.Pending,.InProgress{background:#fff4d6}
.Error,.Missing,.Terminating{background:#fde2e1}.Disabled,.Partial,.absent{background:#eee;color:#777}
.warn{color:#a40000}
.totals td:nth-child(n+2){text-align:right}
"#;

fn totals_cells(t: &Totals) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
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
    )
}

const TOTALS_HEADER: &str = "<tr><th>namespace</th><th>containers</th><th>coverage</th><th>RuntimeDefault</th><th>Localhost</th><th>Unconfined</th><th>privileged</th><th>host namespaces</th><th>capabilities added</th><th>recorded, unused</th><th>seccomp denials</th><th>SELinux denials</th></tr>";

/// Horizontal bars, one per namespace: the share of its containers under a filter.
fn coverage_bars(report: &Report) -> String {
    const LABEL: u32 = 260;
    const BAR: u32 = 400;
    const ROW: u32 = 22;
    let rows: Vec<(String, Option<f64>, u64)> = report
        .namespaces
        .iter()
        .map(|ns| (ns.name.clone(), ns.totals.coverage, ns.totals.containers))
        .chain([(
            "(cluster)".to_owned(),
            report.cluster.coverage,
            report.cluster.containers,
        )])
        .collect();
    let height = ROW * rows.len() as u32 + 4;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" aria-label="coverage by namespace">"#,
        w = LABEL + BAR + 80
    );
    for (i, (name, coverage, containers)) in rows.iter().enumerate() {
        let y = ROW * i as u32 + 2;
        let filled = coverage.map_or(0.0, |c| c / 100.0 * f64::from(BAR));
        let shown: String = name.chars().take(36).collect();
        let _ = write!(
            svg,
            r##"<g class="bar"><title>{title}: {pct} of {containers}</title><text x="{tx}" y="{ty}" text-anchor="end" font-size="13">{label}</text><rect x="{LABEL}" y="{y}" width="{BAR}" height="{h}" fill="#eee"/><rect x="{LABEL}" y="{y}" width="{filled:.1}" height="{h}" fill="#3b8f4f"/><text x="{px}" y="{ty}" font-size="13">{pct}</text></g>"##,
            title = escape(name),
            label = escape(&shown),
            pct = percent(*coverage),
            tx = LABEL - 6,
            ty = y + 14,
            h = ROW - 6,
            px = LABEL + BAR + 6,
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Syscribe report</title><style>{STYLE}</style></head><body>\n<h1>Security profile report</h1>\n"
    );
    let _ = writeln!(
        out,
        "<p id=\"cluster-coverage\">Cluster coverage: <strong>{}</strong> of {} containers run under a seccomp filter (RuntimeDefault {}, Localhost {}, Unconfined {}).</p>",
        percent(report.cluster.coverage),
        report.cluster.containers,
        report.cluster.runtime_default,
        report.cluster.localhost,
        report.cluster.unconfined,
    );
    let _ = writeln!(
        out,
        "<p>Assumed: kubelet <code>seccompDefault</code> {}; privileged containers run Unconfined (the runtime loads no filter into them). Coverage = containers under RuntimeDefault or Localhost / all containers of pods not finished (init and ephemeral containers included).</p>",
        if report.assumptions.seccomp_default {
            "on (no profile = RuntimeDefault)"
        } else {
            "off (no profile = Unconfined)"
        }
    );
    out.push_str("<h2>Coverage by namespace</h2>\n");
    out.push_str(&coverage_bars(report));
    out.push_str("\n<table class=\"totals\">");
    out.push_str(TOTALS_HEADER);
    for ns in &report.namespaces {
        let _ = write!(
            out,
            "<tr><td>{}</td>{}</tr>",
            escape(&ns.name),
            totals_cells(&ns.totals)
        );
    }
    let _ = writeln!(
        out,
        "<tr><th>(cluster)</th>{}</tr></table>",
        totals_cells(&report.cluster)
    );

    out.push_str("<h2>Profiles on nodes</h2>\n");
    if report.profiles.is_empty() {
        out.push_str("<p>No SeccompProfile.</p>\n");
    } else {
        let nodes: std::collections::BTreeSet<&String> = report
            .nodes
            .iter()
            .map(|n| &n.name)
            .chain(report.profiles.iter().flat_map(|p| p.nodes.keys()))
            .collect();
        out.push_str("<table class=\"matrix\"><tr><th>SeccompProfile</th>");
        for node in &nodes {
            let _ = write!(out, "<th>{}</th>", escape(node));
        }
        out.push_str("</tr>\n");
        for profile in &report.profiles {
            let _ = write!(
                out,
                "<tr><td>{}{}</td>",
                escape(&profile.name),
                if profile.recorded { " (recorded)" } else { "" }
            );
            for node in &nodes {
                match profile.nodes.get(*node) {
                    Some(state) => {
                        let _ = write!(
                            out,
                            "<td class=\"{}\">{}</td>",
                            escape(state),
                            escape(state)
                        );
                    }
                    None => out.push_str("<td class=\"absent\">-</td>"),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Nodes</h2>\n<table><tr><th>node</th><th>daemon</th><th>denials</th></tr>\n");
    for node in &report.nodes {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            escape(&node.name),
            escape(node.daemon.as_deref().unwrap_or("-")),
            if node.error.is_some() {
                " class=\"warn\""
            } else {
                ""
            },
            match &node.error {
                None => "metrics read".to_owned(),
                Some(e) => format!("unknown: {}", escape(e)),
            }
        );
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Containers</h2>\n");
    for ns in &report.namespaces {
        let _ = writeln!(
            out,
            "<h3>{} — {} of {}</h3>",
            escape(&ns.name),
            percent(ns.totals.coverage),
            ns.totals.containers
        );
        if ns.containers.is_empty() {
            continue;
        }
        out.push_str("<table class=\"containers\"><tr><th>pod</th><th>container</th><th>kind</th><th>node</th><th>seccomp</th><th>on node</th><th>SELinux type</th><th>privileged</th><th>capabilities added</th><th>host namespaces</th><th>recorded, unused</th><th>denials</th></tr>\n");
        for row in &ns.containers {
            let mode = match row.seccomp.mode {
                SeccompMode::Unconfined => "Unconfined",
                SeccompMode::RuntimeDefault => "RuntimeDefault",
                SeccompMode::Localhost => "Localhost",
            };
            let status = row.seccomp.node_status.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{mode}\">{}</td><td class=\"{}\">{}</td><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&row.pod),
                escape(&row.container),
                kind_cell(row.kind),
                escape(row.node.as_deref().unwrap_or("-")),
                escape(&seccomp_cell(row)),
                escape(status),
                escape(status),
                escape(row.selinux_type.as_deref().unwrap_or("")),
                if row.privileged {
                    " class=\"warn\""
                } else {
                    ""
                },
                if row.privileged { "yes" } else { "" },
                escape(&row.added_capabilities.join(", ")),
                host_cell(row),
                escape(&row.recorded_unused.join(", ")),
                escape(&denials_cell(row)),
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}
