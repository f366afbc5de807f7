//! The rules `validate` applies beyond the appspec grammar: what the hook
//! scripts, file sources and users named by the appspec must be on disk and on
//! this host for a deployment to work. Pure: the facts are looked up by the
//! caller (`mod.rs`) and arrive as [`Facts`]; the findings come out.

use std::collections::HashMap;
use std::fmt;

use super::skeleton::Skeleton;
use crate::appspec::RevisionPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The deployment would fail (or the appspec is invalid).
    Error,
    /// Accepted, but probably not what the author meant.
    Warning,
}

/// One problem or warning, with the appspec line it concerns when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub line: Option<usize>,
    pub message: String,
}

impl Finding {
    pub fn error(line: Option<usize>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            line,
            message: message.into(),
        }
    }

    pub fn warning(line: Option<usize>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// What a hook script is in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptFacts {
    Missing,
    NotAFile,
    /// A link that resolves outside the revision.
    Outside {
        target: String,
    },
    Present {
        executable: bool,
        interpreter: Interpreter,
    },
}

/// How the kernel would start the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// A compiled program.
    Binary,
    /// Text without a `#!` line.
    NoShebang,
    Shebang {
        program: String,
        /// The program exists and is executable on this host.
        usable: bool,
        /// For `#!/usr/bin/env CMD`: CMD and whether it is on PATH.
        via_env: Option<(String, bool)>,
    },
}

/// What a user named by `runas` is on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFacts {
    Missing,
    /// Exists, with a shell that refuses to run commands.
    NoLogin {
        shell: String,
    },
    Usable,
}

/// Everything looked up for one appspec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// By location as written.
    pub scripts: HashMap<String, ScriptFacts>,
    /// By source as written: does it exist in the bundle?
    pub sources: HashMap<String, bool>,
    pub users: HashMap<String, UserFacts>,
    /// Groups (permissions `group`) that exist.
    pub groups: HashMap<String, bool>,
    pub sudo_available: bool,
}

/// The `#!` line of a script's first bytes: the program and its one argument
/// string (as the kernel splits it). `None` when there is no `#!` line.
pub fn parse_shebang(head: &[u8]) -> Option<(String, Option<String>)> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next().unwrap_or(rest);
    let line = String::from_utf8_lossy(line);
    let line = line.trim_start_matches([' ', '\t']);
    let (program, argument) = match line.find([' ', '\t']) {
        Some(split) => (
            &line[..split],
            Some(line[split..].trim_matches([' ', '\t'])),
        ),
        None => (line, None),
    };
    Some((
        program.to_string(),
        argument.filter(|a| !a.is_empty()).map(str::to_string),
    ))
}

/// The command `env` would run for `#!/usr/bin/env ARGUMENT`: the first word
/// that is neither an option nor a `NAME=value` assignment.
pub fn env_command(argument: &str) -> Option<&str> {
    argument
        .split_whitespace()
        .find(|word| !word.starts_with('-') && !word.contains('='))
}

pub fn is_env(program: &str) -> bool {
    program.rsplit('/').next() == Some("env")
}

/// The findings about the bundle and the host for one appspec.
pub fn check(skeleton: &Skeleton, facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    for script in &skeleton.scripts {
        // A location the grammar refuses (`..`, the root) is the parser's to report.
        if RevisionPath::parse(&script.location).is_none_or(|p| p.is_root()) {
            continue;
        }
        let at = |message: String| Finding::error(script.line, message);
        let name = format!("hooks.{}: script {}", script.event, script.location);
        match facts.scripts.get(&script.location) {
            None | Some(ScriptFacts::Missing) => {
                findings.push(at(format!("{name} does not exist in the bundle")))
            }
            Some(ScriptFacts::NotAFile) => findings.push(at(format!("{name} is not a file"))),
            Some(ScriptFacts::Outside { target }) => findings.push(at(format!(
                "{name} is a link to {target}, outside the revision; the agent refuses to run it"
            ))),
            Some(ScriptFacts::Present {
                executable,
                interpreter,
            }) => {
                if !executable {
                    findings.push(Finding::warning(
                        script.line,
                        format!(
                            "{name} is not executable; the agent makes it executable (chmod +x) before running it, \
                             but setting the mode in the bundle says what is meant"
                        ),
                    ));
                }
                findings.extend(interpreter_finding(&name, script.line, interpreter));
            }
        }
        if script.sudo && !facts.sudo_available {
            findings.push(at(format!(
                "{name} has sudo: true, but there is no sudo command on this host"
            )));
        }
    }
    for user in &skeleton.runas {
        match facts.users.get(&user.value) {
            None | Some(UserFacts::Missing) => findings.push(Finding::error(
                user.line,
                format!("runas user {} does not exist on this host", user.value),
            )),
            Some(UserFacts::NoLogin { shell }) => findings.push(Finding::error(
                user.line,
                format!(
                    "runas user {} has the shell {shell}, which refuses to run commands: su would fail",
                    user.value
                ),
            )),
            Some(UserFacts::Usable) => {}
        }
    }
    for source in &skeleton.sources {
        let escapes = RevisionPath::parse(&source.value).is_none();
        if !escapes && facts.sources.get(&source.value) != Some(&true) {
            findings.push(Finding::error(
                source.line,
                format!(
                    "files: source {} does not exist in the bundle",
                    source.value
                ),
            ));
        }
    }
    for owner in &skeleton.owners {
        if !matches!(
            facts.users.get(&owner.value),
            Some(UserFacts::Usable | UserFacts::NoLogin { .. })
        ) {
            findings.push(Finding::error(
                owner.line,
                format!(
                    "permissions: owner {} does not exist on this host",
                    owner.value
                ),
            ));
        }
    }
    for group in &skeleton.groups {
        if facts.groups.get(&group.value) != Some(&true) {
            findings.push(Finding::error(
                group.line,
                format!(
                    "permissions: group {} does not exist on this host",
                    group.value
                ),
            ));
        }
    }
    findings
}

fn interpreter_finding(
    name: &str,
    line: Option<usize>,
    interpreter: &Interpreter,
) -> Option<Finding> {
    let message = match interpreter {
        Interpreter::Binary => return None,
        Interpreter::NoShebang => {
            // Both agents then run it with /bin/sh: it works, but only as a
            // POSIX shell script, whatever its author had in mind.
            return Some(Finding::warning(
                line,
                format!(
                    "{name} has no #! line: it runs with /bin/sh (as with the official agent); \
                     start it with #!/bin/sh, or the interpreter it needs, to make that explicit"
                ),
            ));
        }
        Interpreter::Shebang { program, .. } if program.ends_with('\r') => format!(
            "{name} has Windows line endings: its #! line names '{}\\r', which does not exist; convert it to Unix line endings",
            program.trim_end_matches('\r')
        ),
        Interpreter::Shebang { program, .. } if !program.starts_with('/') => format!(
            "{name} names the interpreter '{program}' in its #! line; it must be an absolute path such as /bin/sh"
        ),
        Interpreter::Shebang {
            program,
            usable: false,
            ..
        } => format!(
            "{name} names the interpreter {program} in its #! line, which does not exist or is not executable on this host"
        ),
        Interpreter::Shebang {
            program,
            via_env: Some((command, false)),
            ..
        } => format!(
            "{name} runs {command} through {program}, but {command} is not on this host's PATH"
        ),
        Interpreter::Shebang { .. } => return None,
    };
    Some(Finding::error(line, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontends::validate::skeleton::{Located, ScriptRef};

    #[test]
    fn shebang_lines() {
        type Parsed<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: &[(&[u8], Parsed<'_>)] = &[
            (b"#!/bin/sh\necho", Some(("/bin/sh", None))),
            (b"#! /bin/bash -e\n", Some(("/bin/bash", Some("-e")))),
            (
                b"#!/usr/bin/env python3\n",
                Some(("/usr/bin/env", Some("python3"))),
            ),
            (b"#!/bin/sh\r\n", Some(("/bin/sh\r", None))),
            (b"#!/bin/sh", Some(("/bin/sh", None))),
            (b"echo hi\n", None),
            (b"", None),
        ];
        for (head, expected) in cases {
            let got = parse_shebang(head);
            let expected = expected.map(|(p, a)| (p.to_string(), a.map(str::to_string)));
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(head));
        }
        assert_eq!(env_command("-S python3 -u"), Some("python3"));
        assert_eq!(env_command("LANG=C node"), Some("node"));
        assert_eq!(env_command("-i"), None);
        assert!(is_env("/usr/bin/env"));
        assert!(!is_env("/usr/bin/envoy"));
    }

    fn script(event: &str, location: &str, line: usize) -> ScriptRef {
        ScriptRef {
            event: event.into(),
            location: location.into(),
            runas: None,
            sudo: false,
            line: Some(line),
        }
    }

    fn present(interpreter: Interpreter) -> ScriptFacts {
        ScriptFacts::Present {
            executable: true,
            interpreter,
        }
    }

    fn shebang(program: &str, usable: bool, via_env: Option<(&str, bool)>) -> Interpreter {
        Interpreter::Shebang {
            program: program.into(),
            usable,
            via_env: via_env.map(|(c, found)| (c.to_string(), found)),
        }
    }

    #[test]
    fn each_script_problem_is_reported_on_its_line() {
        let cases: Vec<(ScriptFacts, Option<(Severity, &str)>)> = vec![
            (present(shebang("/bin/sh", true, None)), None),
            (present(Interpreter::Binary), None),
            (
                ScriptFacts::Missing,
                Some((Severity::Error, "does not exist in the bundle")),
            ),
            (
                ScriptFacts::NotAFile,
                Some((Severity::Error, "is not a file")),
            ),
            (
                ScriptFacts::Outside {
                    target: "/etc/passwd".into(),
                },
                Some((Severity::Error, "outside the revision")),
            ),
            (
                ScriptFacts::Present {
                    executable: false,
                    interpreter: shebang("/bin/sh", true, None),
                },
                Some((Severity::Warning, "is not executable")),
            ),
            (
                present(Interpreter::NoShebang),
                Some((Severity::Warning, "has no #! line")),
            ),
            (
                present(shebang("/bin/sh\r", false, None)),
                Some((Severity::Error, "Windows line endings")),
            ),
            (
                present(shebang("bash", false, None)),
                Some((Severity::Error, "must be an absolute path")),
            ),
            (
                present(shebang("/opt/python/bin/python9", false, None)),
                Some((Severity::Error, "does not exist or is not executable")),
            ),
            (
                present(shebang("/usr/bin/env", true, Some(("ruby", false)))),
                Some((Severity::Error, "ruby is not on this host's PATH")),
            ),
            (
                present(shebang("/usr/bin/env", true, Some(("sh", true)))),
                None,
            ),
        ];
        for (facts_of_script, expected) in cases {
            let skeleton = Skeleton {
                scripts: vec![script("AfterInstall", "scripts/a.sh", 7)],
                ..Skeleton::default()
            };
            let mut facts = Facts::default();
            facts
                .scripts
                .insert("scripts/a.sh".into(), facts_of_script.clone());
            let findings = check(&skeleton, &facts);
            match expected {
                None => assert!(findings.is_empty(), "{facts_of_script:?}: {findings:?}"),
                Some((severity, text)) => {
                    assert_eq!(findings.len(), 1, "{facts_of_script:?}: {findings:?}");
                    assert_eq!(findings[0].severity, severity);
                    assert_eq!(findings[0].line, Some(7));
                    assert!(
                        findings[0]
                            .message
                            .starts_with("hooks.AfterInstall: script scripts/a.sh "),
                        "{}",
                        findings[0].message
                    );
                    assert!(
                        findings[0].message.contains(text),
                        "{}",
                        findings[0].message
                    );
                }
            }
        }
    }

    #[test]
    fn users_sources_owners_and_sudo() {
        let located = |value: &str, line| Located {
            value: value.into(),
            line: Some(line),
        };
        let mut sudo_script = script("ApplicationStart", "start.sh", 9);
        sudo_script.sudo = true;
        let skeleton = Skeleton {
            scripts: vec![sudo_script],
            sources: vec![
                located("content", 4),
                located("missing", 6),
                located("../up", 8),
            ],
            runas: vec![
                located("deploy", 10),
                located("ghost", 11),
                located("daemon", 12),
            ],
            owners: vec![located("deploy", 13), located("nobody-here", 14)],
            groups: vec![located("web", 15), located("nogroup-here", 16)],
        };
        let mut facts = Facts::default();
        facts
            .scripts
            .insert("start.sh".into(), present(Interpreter::Binary));
        facts.sources.insert("content".into(), true);
        facts.sources.insert("missing".into(), false);
        facts.users.insert("deploy".into(), UserFacts::Usable);
        facts.users.insert("ghost".into(), UserFacts::Missing);
        facts.users.insert(
            "daemon".into(),
            UserFacts::NoLogin {
                shell: "/usr/sbin/nologin".into(),
            },
        );
        facts.groups.insert("web".into(), true);
        let got: Vec<(Option<usize>, String)> = check(&skeleton, &facts)
            .into_iter()
            .map(|f| (f.line, f.message))
            .collect();
        let expected: Vec<(Option<usize>, String)> = vec![
            (Some(9), "hooks.ApplicationStart: script start.sh has sudo: true, but there is no sudo command on this host".into()),
            (Some(11), "runas user ghost does not exist on this host".into()),
            (Some(12), "runas user daemon has the shell /usr/sbin/nologin, which refuses to run commands: su would fail".into()),
            (Some(6), "files: source missing does not exist in the bundle".into()),
            (Some(14), "permissions: owner nobody-here does not exist on this host".into()),
            (Some(16), "permissions: group nogroup-here does not exist on this host".into()),
        ];
        assert_eq!(got, expected);
    }
}
