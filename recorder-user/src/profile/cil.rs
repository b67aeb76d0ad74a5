//! SELinux CIL: reading a policy with a position for every problem, and writing the module a
//! SelinuxProfile stands for.
//!
//! Reading is for people who wrote a RawSelinuxProfile by hand: a `)` that closes nothing, a
//! `(` that is never closed (with the statement that started inside it, where the missing `)`
//! most likely belongs), an unterminated string, an unknown statement (with "did you mean"), a
//! statement that would change the node's whole policy rather than this container's type, and
//! allow rules of the wrong shape — each at its line and column. The semantic check (do the
//! types, classes and permissions exist) is the real CIL compiler's job.
//!
//! Writing follows upstream's translation: a block named after the profile that inherits the
//! container template (or the policies it names), its allow rules sorted, `process` as the
//! source; pods use it as `seLinuxOptions.type: <name>.process`.

use std::collections::{BTreeMap, BTreeSet};

/// Line and column (1-based; the column counts characters) in the policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Atom { text: String, at: Pos },
    Str { text: String, at: Pos },
    List { items: Vec<Expr>, open: Pos },
}

impl Expr {
    pub fn at(&self) -> Pos {
        match self {
            Self::Atom { at, .. } | Self::Str { at, .. } => *at,
            Self::List { open, .. } => *open,
        }
    }

    fn atom(&self) -> Option<&str> {
        match self {
            Self::Atom { text, .. } => Some(text),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CilProblem {
    pub at: Pos,
    pub message: String,
}

/// The most characters a policy may have (upstream's schema: 500,000).
pub const MAX_POLICY_CHARS: usize = 500_000;
/// The deepest nesting of lists (real modules nest 5 deep).
pub const MAX_DEPTH: usize = 64;
/// Problems reported per policy; the rest are counted.
pub const MAX_PROBLEMS: usize = 50;

/// Every CIL statement (the CIL reference, libsepol 3.x).
pub const STATEMENTS: &[&str] = &[
    "allow",
    "allowx",
    "auditallow",
    "auditallowx",
    "dontaudit",
    "dontauditx",
    "neverallow",
    "neverallowx",
    "deny",
    "type",
    "typealias",
    "typealiasactual",
    "typeattribute",
    "typeattributeset",
    "expandtypeattribute",
    "typebounds",
    "typechange",
    "typemember",
    "typetransition",
    "typepermissive",
    "role",
    "roleattribute",
    "roleattributeset",
    "roleallow",
    "roletransition",
    "roletype",
    "rolebounds",
    "user",
    "userattribute",
    "userattributeset",
    "userrole",
    "userlevel",
    "userrange",
    "userbounds",
    "userprefix",
    "selinuxuser",
    "selinuxuserdefault",
    "block",
    "blockabstract",
    "blockinherit",
    "in",
    "optional",
    "macro",
    "call",
    "boolean",
    "booleanif",
    "tunable",
    "tunableif",
    "class",
    "classorder",
    "classpermission",
    "classpermissionset",
    "classmap",
    "classmapping",
    "classcommon",
    "common",
    "permissionx",
    "sid",
    "sidorder",
    "sidcontext",
    "context",
    "filecon",
    "fsuse",
    "genfscon",
    "ibpkeycon",
    "ibendportcon",
    "netifcon",
    "nodecon",
    "portcon",
    "pirqcon",
    "iomemcon",
    "ioportcon",
    "pcidevicecon",
    "devicetreecon",
    "sensitivity",
    "sensitivityalias",
    "sensitivityaliasactual",
    "sensitivityorder",
    "category",
    "categoryalias",
    "categoryaliasactual",
    "categoryorder",
    "sensitivitycategory",
    "level",
    "levelrange",
    "rangetransition",
    "mls",
    "handleunknown",
    "defaultuser",
    "defaultrole",
    "defaulttype",
    "defaultrange",
    "constrain",
    "validatetrans",
    "mlsconstrain",
    "mlsvalidatetrans",
    "policycap",
    "ipaddr",
    "categoryset",
    "classmapping",
    "src_info",
];

/// Statements a RawSelinuxProfile may not hold: they change the node's whole policy (classes,
/// users, roles, labelling of files and ports, MLS) rather than the container type it defines.
/// Upstream's list, less `blockinherit`, which is how a profile builds on the container
/// template (upstream's own example uses it).
pub const RESTRICTED: &[&str] = &[
    "block",
    "blockstart",
    "booleanif",
    "category",
    "categoryorder",
    "class",
    "classmap",
    "classmapping",
    "classorder",
    "context",
    "dominance",
    "filecon",
    "genfscon",
    "level",
    "levelrange",
    "mls",
    "netifcon",
    "nodecon",
    "optional",
    "policycap",
    "portcon",
    "role",
    "roletype",
    "sensitivity",
    "sensitivityorder",
    "sid",
    "sidcontext",
    "sidorder",
    "tunable",
    "tunableif",
    "typepermissive",
    "user",
    "userrole",
];

/// Statements whose rule is `(KIND source target classperms)`.
const AV_RULES: &[&str] = &["allow", "auditallow", "dontaudit", "neverallow", "deny"];

struct Problems {
    list: Vec<CilProblem>,
    dropped: usize,
    /// Where the first problem not listed is: the count of the rest is said there.
    first_dropped: Option<Pos>,
}

impl Problems {
    fn new() -> Self {
        Self {
            list: Vec::new(),
            dropped: 0,
            first_dropped: None,
        }
    }

    fn push(&mut self, at: Pos, message: impl Into<String>) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(CilProblem {
                at,
                message: message.into(),
            });
        } else {
            self.dropped += 1;
            self.first_dropped.get_or_insert(at);
        }
    }

    fn finish(mut self) -> Vec<CilProblem> {
        if let Some(at) = self.first_dropped {
            self.list.push(CilProblem {
                at,
                message: format!(
                    "and {} more problems not listed (the first {MAX_PROBLEMS} are)",
                    self.dropped
                ),
            });
        }
        self.list
    }
}

struct Frame {
    open: Pos,
    items: Vec<Expr>,
    /// The first list opened on a later line at or left of this one's column while it was
    /// open: where a missing `)` most likely belongs.
    suspect: Option<Pos>,
}

/// Reads `text` as CIL; every syntax problem is listed in text order. What could be read is
/// returned too (an unclosed list as if closed at the end), so statements are still checked.
pub fn parse(text: &str) -> (Vec<Expr>, Vec<CilProblem>) {
    let (exprs, problems, misplaced) = parse_with(text, &[]);
    if misplaced.is_empty() {
        return (exprs, problems);
    }
    // Read again, closing each list a ')' is missing from where the next statement starts,
    // so that what follows is checked as the statements they are (the problems stay the
    // first reading's).
    let (exprs, _, _) = parse_with(text, &misplaced);
    (exprs, problems)
}

/// One reading; `close_at` holds the lists (by their '(') to close where a later line starts
/// a list at or left of their column. Returns the lists never closed that have such a line.
fn parse_with(text: &str, close_at: &[Pos]) -> (Vec<Expr>, Vec<CilProblem>, Vec<Pos>) {
    let mut problems = Problems::new();
    let chars = text.chars().count();
    if chars > MAX_POLICY_CHARS {
        problems.push(
            Pos { line: 1, column: 1 },
            format!("{chars} characters is more than the {MAX_POLICY_CHARS} a policy may have"),
        );
        return (Vec::new(), problems.finish(), Vec::new());
    }
    let mut top: Vec<Expr> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut line, mut column) = (1usize, 0usize);
    let mut line_start = true;
    let mut iter = text.chars().peekable();
    let mut too_deep_said = false;
    let mut too_deep = 0usize;
    let push = |stack: &mut Vec<Frame>, top: &mut Vec<Expr>, expr: Expr| match stack.last_mut() {
        Some(frame) => frame.items.push(expr),
        None => top.push(expr),
    };
    while let Some(c) = iter.next() {
        column += 1;
        let here = Pos { line, column };
        match c {
            '\n' => {
                line += 1;
                column = 0;
                line_start = true;
                continue;
            }
            ' ' | '\t' | '\r' => continue,
            ';' => {
                // A comment, to the end of the line.
                while iter.peek().is_some_and(|&c| c != '\n') {
                    iter.next();
                }
                continue;
            }
            '(' => {
                if line_start && !close_at.is_empty() {
                    while let Some(frame) = stack.last() {
                        if !(close_at.contains(&frame.open)
                            && frame.open.line < line
                            && column <= frame.open.column)
                        {
                            break;
                        }
                        let frame = stack.pop().expect("a frame");
                        let expr = Expr::List {
                            items: frame.items,
                            open: frame.open,
                        };
                        push(&mut stack, &mut top, expr);
                    }
                }
                if line_start {
                    for frame in stack.iter_mut() {
                        if frame.suspect.is_none()
                            && frame.open.line < line
                            && column <= frame.open.column
                        {
                            frame.suspect = Some(here);
                        }
                    }
                }
                if stack.len() >= MAX_DEPTH {
                    if !too_deep_said {
                        problems.push(here, format!("nested more than {MAX_DEPTH} levels deep"));
                        too_deep_said = true;
                    }
                    // Counted, not built: the tree stays at most MAX_DEPTH deep.
                    too_deep += 1;
                    line_start = false;
                    continue;
                }
                stack.push(Frame {
                    open: here,
                    items: Vec::new(),
                    suspect: None,
                });
            }
            ')' if too_deep > 0 => too_deep -= 1,
            ')' => match stack.pop() {
                Some(frame) => {
                    let expr = Expr::List {
                        items: frame.items,
                        open: frame.open,
                    };
                    push(&mut stack, &mut top, expr);
                }
                None => problems.push(
                    here,
                    "this ')' closes nothing: there is no '(' open before it",
                ),
            },
            '"' => {
                let mut text = String::new();
                let mut closed = false;
                for c in iter.by_ref() {
                    if c == '"' {
                        column += 1;
                        closed = true;
                        break;
                    }
                    if c == '\n' {
                        line += 1;
                        column = 0;
                    } else {
                        column += 1;
                    }
                    text.push(c);
                }
                if !closed {
                    problems.push(here, "this string is never closed: a '\"' is missing");
                }
                push(&mut stack, &mut top, Expr::Str { text, at: here });
            }
            _ => {
                let mut text = String::from(c);
                while let Some(&next) = iter.peek() {
                    if next.is_whitespace() || matches!(next, '(' | ')' | '"' | ';') {
                        break;
                    }
                    text.push(next);
                    iter.next();
                    column += 1;
                }
                push(&mut stack, &mut top, Expr::Atom { text, at: here });
            }
        }
        line_start = false;
    }
    let misplaced: Vec<Pos> = stack
        .iter()
        .filter(|f| f.suspect.is_some())
        .map(|f| f.open)
        .collect();
    // Unclosed lists, outermost first, each closed at the end so its statements are checked.
    for frame in &stack {
        let hint = match frame.suspect {
            Some(at) => format!(
                "; the statement at {at} starts inside it — a ')' is probably missing before it"
            ),
            None => String::new(),
        };
        problems.push(frame.open, format!("this '(' is never closed{hint}"));
    }
    while let Some(frame) = stack.pop() {
        let expr = Expr::List {
            items: frame.items,
            open: frame.open,
        };
        push(&mut stack, &mut top, expr);
    }
    problems.list.sort_by_key(|p| p.at);
    (top, problems.finish(), misplaced)
}

/// The statement problems of a parsed policy: what is not a statement, unknown statements
/// (with "did you mean"), statements in `restricted`, and allow rules of the wrong shape.
pub fn check_statements(exprs: &[Expr], restricted: &[&str]) -> Vec<CilProblem> {
    let mut problems = Problems::new();
    for expr in exprs {
        statement(expr, restricted, &mut problems, 0);
    }
    problems.finish()
}

fn statement(expr: &Expr, restricted: &[&str], problems: &mut Problems, depth: usize) {
    let Expr::List { items, open } = expr else {
        problems.push(
            expr.at(),
            "a statement must be a list in parentheses, like (allow process var_log_t (file (read)))",
        );
        return;
    };
    let Some(head) = items.first() else {
        problems.push(*open, "an empty statement: '()'");
        return;
    };
    let Some(keyword) = head.atom() else {
        problems.push(
            head.at(),
            "a statement starts with its keyword (allow, type, blockinherit, …), not a list or string",
        );
        return;
    };
    if !STATEMENTS.contains(&keyword) {
        let hint = super::validate::suggestion(keyword, STATEMENTS.iter().copied());
        problems.push(head.at(), format!("unknown statement {keyword:?}{hint}"));
        return;
    }
    if restricted.contains(&keyword) {
        problems.push(
            head.at(),
            format!(
                "{keyword} is not allowed here: it changes the node's whole policy, not this \
                 profile's container type"
            ),
        );
        return;
    }
    if AV_RULES.contains(&keyword) {
        av_rule(keyword, items, *open, problems);
    }
    // Statements that hold statements.
    let body: &[Expr] = match keyword {
        "block" | "in" | "optional" => items.get(2..).unwrap_or_default(),
        "macro" => items.get(3..).unwrap_or_default(),
        "booleanif" | "tunableif" => {
            // (booleanif cond (true stmts…) (false stmts…))
            for branch in items.get(2..).unwrap_or_default() {
                if let Expr::List { items, .. } = branch
                    && let Some(rest) = items.get(1..)
                {
                    for inner in rest {
                        nested(inner, restricted, problems, depth);
                    }
                }
            }
            &[]
        }
        _ => &[],
    };
    for inner in body {
        nested(inner, restricted, problems, depth);
    }
}

fn nested(expr: &Expr, restricted: &[&str], problems: &mut Problems, depth: usize) {
    if depth < MAX_DEPTH {
        statement(expr, restricted, problems, depth + 1);
    }
}

/// `(allow source target classperms)`: classperms is a named classpermission or
/// `(class (perm …))`.
fn av_rule(keyword: &str, items: &[Expr], open: Pos, problems: &mut Problems) {
    let shape = format!("({keyword} SOURCE TARGET (CLASS (PERMISSION …)))");
    if items.len() != 4 {
        let at = items.get(4).map_or(open, Expr::at);
        problems.push(
            at,
            format!("{keyword} takes 3 parts, not {}: {shape}", items.len() - 1),
        );
        return;
    }
    for (i, part) in items[1..3].iter().enumerate() {
        if part.atom().is_none() && !matches!(part, Expr::List { .. }) {
            let what = ["source", "target"][i];
            problems.push(
                part.at(),
                format!("the {what} must be a type name: {shape}"),
            );
        }
    }
    match &items[3] {
        Expr::Atom { .. } => {}
        Expr::Str { at, .. } => problems.push(*at, format!("a string is no class: {shape}")),
        Expr::List { items: cp, open } => match cp.as_slice() {
            [
                class,
                Expr::List {
                    items: perms,
                    open: perms_at,
                },
            ] if class.atom().is_some() => {
                if perms.is_empty() {
                    problems.push(*perms_at, "no permissions: name at least one");
                }
                for perm in perms {
                    if perm.atom().is_none() && !matches!(perm, Expr::List { .. }) {
                        problems.push(perm.at(), "a permission is a name");
                    }
                }
            }
            [class, other] if class.atom().is_some() => problems.push(
                other.at(),
                format!("the permissions go in parentheses: {shape}"),
            ),
            _ => problems.push(*open, format!("the class and its permissions: {shape}")),
        },
    }
}

/// A SelinuxProfile's allow rules: type label → class → permissions.
pub type AllowRules = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// What a SelinuxProfile inherits from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inherit {
    /// A template of the node's policy (`container`, `net_container`, …).
    System(String),
    /// Another SelinuxProfile: its block.
    Profile(String),
}

/// The name pods use for a profile's type: `<name>.process`.
pub fn usage(name: &str) -> String {
    format!("{name}.process")
}

/// The CIL module for a SelinuxProfile named `name`: `(block <name> …)` inheriting the container
/// template unless another profile is inherited (it already does), `@self` standing for the
/// profile's own type, permissions sorted and each once.
pub fn to_cil(name: &str, inherit: &[Inherit], allow: &AllowRules, permissive: bool) -> String {
    to_cil_lines(name, inherit, allow, permissive)
        .into_iter()
        .map(|(line, _)| line + "\n")
        .collect()
}

/// [`to_cil`] line by line, each with the profile field it comes from (what a compiler's
/// complaint about that line is about).
pub fn to_cil_lines(
    name: &str,
    inherit: &[Inherit],
    allow: &AllowRules,
    permissive: bool,
) -> Vec<(String, String)> {
    let mut lines = vec![(format!("(block {name}"), "metadata.name".to_owned())];
    let inherits_profile = inherit.iter().any(|i| matches!(i, Inherit::Profile(_)));
    if !inherits_profile {
        lines.push(("    (blockinherit container)".into(), "spec.inherit".into()));
    }
    for (i, entry) in inherit.iter().enumerate() {
        let field = format!("spec.inherit[{i}]");
        match entry {
            Inherit::System(template) if template == "container" => {}
            Inherit::System(template) | Inherit::Profile(template) => {
                lines.push((format!("    (blockinherit {template})"), field))
            }
        }
    }
    if permissive {
        lines.push(("    (typepermissive process)".into(), "spec.mode".into()));
    }
    for (label, classes) in allow {
        let target = if label == "@self" {
            usage(name)
        } else {
            label.clone()
        };
        for (class, permissions) in classes {
            let permissions: BTreeSet<&str> = permissions.iter().map(String::as_str).collect();
            let permissions: Vec<&str> = permissions.into_iter().collect();
            lines.push((
                format!(
                    "    (allow process {target} ({class} ({})))",
                    permissions.join(" ")
                ),
                format!("spec.allow.{label}.{class}"),
            ));
        }
    }
    lines.push((")".into(), String::new()));
    lines
}

/// A RawSelinuxProfile's policy as the module installed: wrapped in `(block <name> …)`.
pub fn wrap_raw(name: &str, policy: &str) -> String {
    let mut cil = format!("(block {name}\n");
    for line in policy.trim().lines() {
        cil.push_str("    ");
        cil.push_str(line.trim_end());
        cil.push('\n');
    }
    cil.push_str(")\n");
    cil
}

/// What line `line` of [`wrap_raw`]'s module is in the RawSelinuxProfile: `spec.policy line N`
/// (the policy's own numbering, blank lines before it counted), or the block around it.
pub fn raw_origin(policy: &str, line: usize) -> String {
    raw_origin_at(policy, line).to_string()
}

/// [`raw_origin`] as a field and the position in the policy (its line's first statement).
pub fn raw_origin_at(policy: &str, line: usize) -> Origin {
    let skipped = policy[..policy.len() - policy.trim_start().len()]
        .matches('\n')
        .count();
    let inner: Vec<&str> = policy.trim().lines().collect();
    match line {
        0 | 1 => Origin::field("metadata.name"),
        l if l - 1 <= inner.len() => {
            let text = inner[l - 2];
            let column = text.chars().take_while(|c| c.is_whitespace()).count()
                // The first line of the trimmed policy lost its indentation to the trim.
                + if l == 2 {
                    policy.lines().nth(skipped).map_or(0, |first| {
                        first.chars().take_while(|c| c.is_whitespace()).count()
                    })
                } else {
                    0
                };
            Origin {
                path: "spec.policy".to_owned(),
                within: Some(Pos {
                    line: l - 1 + skipped,
                    column: column + 1,
                }),
            }
        }
        _ => Origin::field("spec.policy"),
    }
}

/// Where a line of a profile's module comes from: a field, and in a RawSelinuxProfile's policy
/// the line and column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub path: String,
    pub within: Option<Pos>,
}

impl Origin {
    fn field(path: &str) -> Self {
        Self {
            path: path.to_owned(),
            within: None,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.within {
            Some(at) => write!(f, "{} line {}", self.path, at.line),
            None => f.write_str(&self.path),
        }
    }
}

/// The module a SelinuxProfile or RawSelinuxProfile document stands for, line by line with
/// where each line comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub cil: String,
    /// `origins[i]`: where line i + 1 of `cil` comes from.
    pub origins: Vec<Origin>,
    /// Other SelinuxProfiles it inherits (their blocks are on the nodes, not in any base).
    pub inherits_profiles: Vec<String>,
}

impl Module {
    /// Where module line `line` (1-based, as compilers number) comes from, if anywhere.
    pub fn origin(&self, line: usize) -> Option<&Origin> {
        self.origins
            .get(line.wrapping_sub(1))
            .filter(|o| !o.path.is_empty())
    }
}

/// The module of a (valid) SelinuxProfile or RawSelinuxProfile document; None for other kinds
/// or a document without a name.
pub fn module_of(doc: &serde_yaml::Value) -> Option<Module> {
    use serde_yaml::Value;
    let name = doc.get("metadata")?.get("name")?.as_str()?.to_owned();
    let spec = doc.get("spec")?;
    match doc.get("kind")?.as_str()? {
        "RawSelinuxProfile" => {
            let policy = spec.get("policy")?.as_str()?;
            let cil = wrap_raw(&name, policy);
            let origins = (1..=cil.lines().count())
                .map(|line| raw_origin_at(policy, line))
                .collect();
            Some(Module {
                name,
                cil,
                origins,
                inherits_profiles: Vec::new(),
            })
        }
        "SelinuxProfile" => {
            let inherit: Vec<Inherit> = spec
                .get("inherit")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|item| {
                    let name = item.get("name")?.as_str()?.to_owned();
                    Some(match item.get("kind").and_then(Value::as_str) {
                        Some("SelinuxProfile") => Inherit::Profile(name),
                        _ => Inherit::System(name),
                    })
                })
                .collect();
            let allow: AllowRules = spec
                .get("allow")
                .and_then(|a| serde_yaml::from_value(a.clone()).ok())
                .unwrap_or_default();
            let permissive = spec.get("permissive").and_then(Value::as_bool) == Some(true)
                || spec.get("mode").and_then(Value::as_str) == Some("Permissive");
            let lines = to_cil_lines(&name, &inherit, &allow, permissive);
            Some(Module {
                cil: lines.iter().map(|(l, _)| format!("{l}\n")).collect(),
                origins: lines.into_iter().map(|(_, o)| Origin::field(&o)).collect(),
                inherits_profiles: inherit
                    .into_iter()
                    .filter_map(|i| match i {
                        Inherit::Profile(p) => Some(p),
                        Inherit::System(_) => None,
                    })
                    .collect(),
                name,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "cil_tests.rs"]
mod tests;
