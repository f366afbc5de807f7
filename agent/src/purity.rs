//! Keeps the pure core pure: the modules that decide (appspec parsing, the
//! install plan, the deployment spec, the poll schedule, the endpoint table,
//! retention and revision choice, diagnostics) must not gain file, network,
//! process or clock access, nor reach for an adaptor of this crate. They are
//! tested by tables because they are functions from data to data; a file
//! read slipped into one of them would make those tables lie. Test-only.

use regex_lite::Regex;

/// The pure modules, by path under `src/`. Only the production part of each
/// file is read (up to its first `#[cfg(test)]`).
const PURE: &[&str] = &[
    "appspec/parse.rs",
    "appspec/parse/duplicate_keys.rs",
    "appspec/parse/files.rs",
    "appspec/parse/hooks.rs",
    "appspec/parse/node.rs",
    "appspec/parse/permissions.rs",
    "appspec/model.rs",
    "appspec/permission.rs",
    "appspec/behavior.rs",
    "appspec/paths.rs",
    "install/plan.rs",
    "deployment_spec/parse.rs",
    "deployment_spec/model.rs",
    "poller/schedule.rs",
    "poller/backoff.rs",
    "protocol/endpoint.rs",
    "protocol/answer.rs",
    "lifecycle/retention.rs",
    "lifecycle/revision.rs",
    "diagnostics.rs",
    "metrics/model.rs",
    "event.rs",
];

/// What pure code must not name: (kind of access, pattern).
const FORBIDDEN: &[(&str, &str)] = &[
    ("file", r"\b(std|tokio)::fs\b"),
    ("file", r"\b(File|OpenOptions)::"),
    (
        "file",
        r"\.(exists|metadata|symlink_metadata|is_file|is_dir|canonicalize|read_link)\(\)",
    ),
    ("file", r"\bread_dir\b"),
    ("file", r"\btempfile\b"),
    ("network", r"\b(std|tokio)::net\b"),
    ("network", r"\b(reqwest|aws_sdk_s3|hyper)\b"),
    ("process", r"\b(std|tokio)::process\b"),
    ("process", r"\bstd::env\b"),
    ("process", r"\b(libc|nix)::"),
    ("clock", r"::now\(\)"),
    ("clock", r"\btokio::time\b"),
    ("clock", r"\bthread::sleep\b"),
    ("any", r"\buse std::\{[^}]*\b(fs|net|process|env)\b"),
    (
        "adaptor",
        r"\bcrate::(bundle|hooks|http|atomic_file|blocking|identity|memory|core_dumps|logging|lifecycle::layout::disk|lifecycle::executor|install::apply|protocol::client)\b",
    ),
];

/// Each forbidden use in `source`: (line number, kind, the line).
fn io_uses(source: &str) -> Vec<(usize, &'static str, String)> {
    let rules: Vec<(&str, Regex)> = FORBIDDEN
        .iter()
        .map(|(kind, pattern)| (*kind, Regex::new(pattern).expect("the patterns are valid")))
        .collect();
    source
        .lines()
        .enumerate()
        .take_while(|(_, line)| !line.contains("#[cfg(test)]"))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .flat_map(|(number, line)| {
            rules
                .iter()
                .filter(|(_, rule)| rule.is_match(line))
                .map(move |(kind, _)| (number + 1, *kind, line.trim().to_string()))
        })
        .collect()
}

#[test]
fn the_pure_core_has_no_file_network_process_or_clock_access() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for module in PURE {
        let source = std::fs::read_to_string(src.join(module))
            .unwrap_or_else(|e| panic!("the pure module {module} is listed but unreadable: {e}"));
        for (line, kind, text) in io_uses(&source) {
            found.push(format!("{module}:{line}: {kind} access: {text}"));
        }
    }
    assert!(
        found.is_empty(),
        "pure modules must stay free of I/O (move it to an adaptor and pass the data in):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_each_kind_of_access() {
    let cases = [
        ("let text = std::fs::read_to_string(path)?;", "file"),
        ("let f = File::open(path)?;", "file"),
        ("if path.exists() {", "file"),
        ("use std::{collections::HashMap, fs};", "any"),
        ("let s = std::net::TcpStream::connect(a)?;", "network"),
        ("let c = reqwest::Client::new();", "network"),
        ("std::process::Command::new(\"sh\")", "process"),
        ("let home = std::env::var(\"HOME\");", "process"),
        ("unsafe { libc::getpid() }", "process"),
        ("let started = Instant::now();", "clock"),
        ("tokio::time::sleep(wait).await;", "clock"),
        ("use crate::lifecycle::layout::disk;", "adaptor"),
        ("crate::bundle::fetch_s3(&client)", "adaptor"),
    ];
    for (line, kind) in cases {
        let uses = io_uses(line);
        assert!(
            uses.iter().any(|(_, k, _)| *k == kind),
            "{line:?} is {kind} access: {uses:?}"
        );
    }
    // Pure code, comments and tests pass.
    let pure = "use std::time::Duration;\n\
                // std::fs is not used here\n\
                fn next(after: Duration) -> Duration { after * 2 }\n\
                #[cfg(test)]\n\
                mod tests { fn t() { std::fs::read(\"x\").ok(); } }\n";
    assert_eq!(io_uses(pure), Vec::new());
}
