//! `codedeploy-agent validate PATH`: everything that would make a deployment of
//! a revision fail on this host, found before deploying it, all at once. PATH is
//! a bundle directory, an archive (unpacked with the agent's own unpacker into a
//! temporary directory) or an appspec file (its directory is the bundle). The
//! appspec goes through the agent's own parser; the grammar's warnings are
//! reported too. What the bundle and the host must hold is checked by the pure
//! rules in `rules.rs` over facts this file looks up. Never changes anything.
//!
//! Parity with a deployment: validate runs the deployment's own checks with
//! the agent configuration's keys (`-c`), not copies of them: the unpacker
//! under the configured [`BundlePolicy`], the appspec's size and pre-parse
//! limits, and Install's planner and hardening check over the revision (with
//! the host seen as empty: what stands there now is the previous revision's
//! cleanup and the deployment's file_exists_behavior to settle). SIGTERM or
//! SIGINT stop it at the next archive entry, with its temporary folder
//! removed.
//!
//! Exit status: 0 no problems (warnings allowed), 1 problems, 2 usage error
//! (the path or the configuration cannot be read), 3 stopped by a signal.

mod rules;
mod skeleton;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use rules::{check, Facts, Finding, Interpreter, ScriptFacts, Severity, UserFacts};
pub use skeleton::{skeleton, Skeleton};

use crate::appspec::{self, AppSpec, RevisionPath};
use crate::config::{BundlePolicy, InstallPolicy};
use crate::deployment_spec::BundleType;
use crate::install::{self, Existing, FsRevision, InstallError};
use crate::lifecycle::layout::DeploymentDir;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// The exit statuses of `codedeploy-agent validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidateExit {
    Valid = 0,
    Problems = 1,
    Usage = 2,
    /// SIGTERM or SIGINT arrived before the end.
    Stopped = 3,
}

/// What a validation runs with: the checks of a deployment on this host.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration's bundle keys, as DownloadBundle applies them.
    pub bundle: BundlePolicy,
    /// The configuration's permission keys, as Install applies them.
    pub install: InstallPolicy,
    pub stop: Shutdown,
}

/// The command-line arguments of `validate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// A bundle directory, an archive (tar, tgz, zip) or an appspec file
    pub path: PathBuf,
    /// The appspec's name in a bundle (the deployment's AppSpecFilename)
    #[arg(short = 'A', long, default_value = "appspec.yml")]
    pub appspec_filename: String,
}

/// Why a path cannot be validated at all.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a temporary directory to unpack {} into: {source}", path.display())]
    TempDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The outcome for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How the appspec is named in the output: a path, or `archive!name`.
    pub file: String,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    /// `file:line: severity: message` lines, errors first, then by line.
    pub fn lines(&self) -> Vec<String> {
        let mut findings = self.findings.clone();
        findings.sort_by_key(|f| (f.severity, f.line.unwrap_or(usize::MAX)));
        findings
            .iter()
            .map(|f| match f.line {
                Some(line) => format!("{}:{line}: {}: {}", self.file, f.severity, f.message),
                None => format!("{}: {}: {}", self.file, f.severity, f.message),
            })
            .collect()
    }

    pub fn summary(&self) -> String {
        let errors = self.errors();
        let warnings = self.findings.len() - errors;
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        if errors == 0 {
            format!("{}: valid ({})", self.file, plural(warnings, "warning"))
        } else {
            format!(
                "{}: {}, {}",
                self.file,
                plural(errors, "problem"),
                plural(warnings, "warning")
            )
        }
    }
}

/// Runs `validate` with the agent configuration `config_file` and prints the
/// findings and a summary to `out`.
pub fn run_cli(
    args: &ValidateArgs,
    config_file: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ValidateExit {
    let config = match crate::config::load_or_defaults(config_file) {
        Ok((config, _, note)) => {
            if let Some(note) = note {
                let _ = writeln!(err, "{note}");
            }
            config
        }
        Err(e) => {
            let _ = writeln!(err, "codedeploy-agent validate: {e}");
            return ValidateExit::Usage;
        }
    };
    let (trigger, stop) = shutdown::channel();
    if let Err(e) = stop_on_signals(trigger) {
        let _ = writeln!(
            err,
            "codedeploy-agent validate: cannot watch for SIGTERM and SIGINT: {e}"
        );
        return ValidateExit::Usage;
    }
    let settings = Settings {
        bundle: config.hardening.bundle,
        install: config.hardening.install,
        stop,
    };
    let outcome = validate_path(&args.path, &args.appspec_filename, &settings);
    if settings.stop.is_triggered() {
        let _ = writeln!(
            err,
            "codedeploy-agent validate: stopped by a signal before the end; its temporary folder is removed"
        );
        return ValidateExit::Stopped;
    }
    match outcome {
        Ok(report) => {
            for line in report.lines() {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out, "{}", report.summary());
            if report.errors() == 0 {
                ValidateExit::Valid
            } else {
                ValidateExit::Problems
            }
        }
        Err(e) => {
            let _ = writeln!(err, "codedeploy-agent validate: {e}");
            ValidateExit::Usage
        }
    }
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread it starts
/// from now on) and triggers `trigger` from a thread of its own when one
/// arrives: the work then stops at its next entry and cleans up after
/// itself, where the default action would end the process on the spot.
fn stop_on_signals(trigger: ShutdownTrigger) -> std::io::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("codedeploy-validate-signals".to_string())
        .spawn(move || {
            if signals.wait().is_ok() {
                trigger.trigger();
            }
        })
        .map(drop)
}

/// Validates a bundle directory, an archive or an appspec file.
pub fn validate_path(
    path: &Path,
    appspec_filename: &str,
    settings: &Settings,
) -> Result<Report, ValidateError> {
    let read_error = |source| ValidateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.is_dir() {
        let mut report = validate_bundle(
            path,
            appspec_filename,
            &path.display().to_string(),
            settings,
        );
        // codedeploy-local copies the directory and refuses what unpacking
        // would: the same names are refused here.
        match crate::bundle::refused_name(path) {
            Ok(Some(refusal)) => report.findings.push(Finding::error(
                None,
                format!("the bundle directory cannot be deployed: {refusal}"),
            )),
            Ok(None) => {}
            Err(e) => report.findings.push(Finding::error(
                None,
                format!("the bundle directory cannot be read through: {e}"),
            )),
        }
        return Ok(report);
    }
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(read_error)?;
    let archive_type = crate::bundle::sniff_archive(&head).or_else(|| {
        // Old (v7) tar files have no magic; their name still says what they are.
        path.extension()
            .is_some_and(|e| e == "tar")
            .then_some(BundleType::Tar)
    });
    let Some(bundle_type) = archive_type else {
        // An appspec file: its directory is the bundle.
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| appspec_filename.to_string());
        return Ok(validate_appspec(
            &dir,
            &name,
            &path.display().to_string(),
            settings,
        ));
    };
    let temp_error = |source| ValidateError::TempDir {
        path: path.to_path_buf(),
        source,
    };
    let temp = tempfile::Builder::new()
        .prefix("codedeploy-validate-")
        .tempdir()
        .map_err(temp_error)?;
    // Laid out as a deployment folder (`logs/` beside the archive): a link
    // that leaves the revision for a sibling resolves here as it would there.
    let folder = DeploymentDir::at(temp.path());
    let archive_dir = folder.archive_dir();
    std::fs::create_dir(folder.logs_dir()).map_err(temp_error)?;
    let label = |name: &str| format!("{}!{name}", path.display());
    match crate::bundle::unpack_with(
        path,
        bundle_type,
        &archive_dir,
        &settings.bundle,
        &settings.stop,
    ) {
        Ok(()) => {
            let mut report = validate_bundle(&archive_dir, appspec_filename, "", settings);
            // Install's messages name the temporary folder: the report
            // names the archive instead.
            let unpacked = format!("{}/", archive_dir.display());
            for finding in &mut report.findings {
                finding.message = finding.message.replace(&unpacked, &label(""));
            }
            report.file = label(&report.file);
            Ok(report)
        }
        Err(e) => Ok(Report {
            file: path.display().to_string(),
            findings: vec![Finding::error(
                None,
                format!("the {} bundle cannot be unpacked: {e}", bundle_type.name()),
            )],
        }),
    }
}

/// A bundle directory: the appspec found as Install finds it, then checked.
/// `shown` is how the directory appears in the output.
fn validate_bundle(dir: &Path, appspec_filename: &str, shown: &str, settings: &Settings) -> Report {
    let shown_file = |name: &str| {
        if shown.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", shown.trim_end_matches('/'))
        }
    };
    let candidates = [appspec_filename, "appspec.yaml", "appspec.yml"];
    let Some(found) = candidates.iter().find(|name| dir.join(name).is_file()) else {
        return Report {
            file: shown_file(appspec_filename),
            findings: vec![Finding::error(
                None,
                format!(
                    "the bundle has no {appspec_filename} at its top (nor appspec.yaml or appspec.yml); \
                     the appspec must sit at the top of the revision"
                ),
            )],
        };
    };
    let mut report = validate_appspec(dir, found, &shown_file(found), settings);
    if *found != appspec_filename {
        report.findings.push(Finding::warning(
            None,
            format!(
                "the deployment expects {appspec_filename}; Install falls back to {found}, \
                 but hooks look for exactly {appspec_filename} and would not find it: \
                 rename the file or set the deployment's AppSpecFilename to {found}"
            ),
        ));
    }
    report
}

/// One appspec file in the bundle directory `dir`.
fn validate_appspec(dir: &Path, name: &str, shown: &str, settings: &Settings) -> Report {
    let path = dir.join(name);
    let mut findings = Vec::new();
    // Read and bounded as Install reads it: past these limits no parser runs.
    let text = match appspec::read(&path)
        .and_then(|text| appspec::check_limits(&text, &path).map(|()| text))
    {
        Ok(text) => text,
        Err(e) => {
            return Report {
                file: shown.to_string(),
                findings: vec![Finding::error(None, e.to_string())],
            }
        }
    };
    match appspec::parse(&text, &path) {
        Ok(parsed) => {
            findings.extend(
                parsed
                    .warnings
                    .iter()
                    .map(|w| Finding::warning(None, w.clone())),
            );
            findings.extend(install_findings(&parsed, dir, settings));
        }
        Err(e) => findings.push(Finding::error(e.line(), grammar_message(&e))),
    }
    let skeleton = skeleton::skeleton(&text);
    let facts = gather_facts(&skeleton, dir);
    findings.extend(rules::check(&skeleton, &facts));
    Report {
        file: shown.to_string(),
        findings,
    }
}

/// What Install's own planner and hardening check refuse in the revision at
/// `dir`, seen against an empty host. A missing source is left to the rules,
/// which name its line.
fn install_findings(appspec: &AppSpec, dir: &Path, settings: &Settings) -> Option<Finding> {
    let planned = FsRevision::new(dir).and_then(|revision| {
        install::check_plan(
            appspec,
            &revision.stopped_by(&settings.stop),
            &|_| Existing::Missing,
            appspec.file_exists_behavior.unwrap_or_default(),
            &settings.install,
            &std::env::temp_dir(),
        )
    });
    match planned {
        Ok(()) | Err(InstallError::SourceMissing { .. } | InstallError::Stopped) => None,
        Err(e) => Some(Finding::error(None, format!("Install would fail: {e}"))),
    }
}

/// The parser's message without the file name and position the report
/// already shows.
fn grammar_message(error: &appspec::AppSpecError) -> String {
    match error {
        appspec::AppSpecError::Invalid { source, .. } => without_position(&source.to_string()),
        other => other.to_string(),
    }
}

/// `message at line 3 column 7, context` → `message, context`: the report
/// puts the line first already.
fn without_position(message: &str) -> String {
    let mut rest = message;
    let mut out = String::with_capacity(message.len());
    while let Some(at) = rest.find(" at line ") {
        let after = &rest[at + " at line ".len()..];
        let line_digits = after.chars().take_while(char::is_ascii_digit).count();
        let column = after[line_digits..].strip_prefix(" column ");
        match column {
            Some(column) if line_digits > 0 => {
                let column_digits = column.chars().take_while(char::is_ascii_digit).count();
                if column_digits == 0 {
                    out.push_str(&rest[..at + 1]);
                    rest = &rest[at + 1..];
                    continue;
                }
                out.push_str(&rest[..at]);
                rest = &column[column_digits..];
            }
            _ => {
                out.push_str(&rest[..at + 1]);
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Looks up, on disk and on this host, everything the rules need.
fn gather_facts(skeleton: &Skeleton, bundle: &Path) -> Facts {
    let mut facts = Facts {
        sudo_available: on_path("sudo"),
        ..Facts::default()
    };
    for script in &skeleton.scripts {
        if let Some(relative) = RevisionPath::parse(&script.location) {
            facts
                .scripts
                .entry(script.location.clone())
                .or_insert_with(|| script_facts(bundle, &relative));
        }
    }
    for source in &skeleton.sources {
        if let Some(relative) = RevisionPath::parse(&source.value) {
            let exists = std::fs::symlink_metadata(relative.under(bundle)).is_ok();
            facts.sources.insert(source.value.clone(), exists);
        }
    }
    for user in skeleton.runas.iter().chain(&skeleton.owners) {
        facts
            .users
            .entry(user.value.clone())
            .or_insert_with(|| user_facts(&user.value));
    }
    for group in &skeleton.groups {
        let exists = matches!(nix::unistd::Group::from_name(&group.value), Ok(Some(_)));
        facts.groups.insert(group.value.clone(), exists);
    }
    facts
}

fn script_facts(bundle: &Path, relative: &RevisionPath) -> ScriptFacts {
    let path = relative.under(bundle);
    if std::fs::symlink_metadata(&path).is_err() {
        return ScriptFacts::Missing;
    }
    let (Ok(real), Ok(real_bundle)) = (std::fs::canonicalize(&path), std::fs::canonicalize(bundle))
    else {
        // A dangling link.
        return ScriptFacts::Missing;
    };
    if !real.starts_with(&real_bundle) {
        return ScriptFacts::Outside {
            target: real.display().to_string(),
        };
    }
    let Ok(meta) = std::fs::metadata(&real) else {
        return ScriptFacts::Missing;
    };
    if !meta.is_file() {
        return ScriptFacts::NotAFile;
    }
    let mut head = Vec::with_capacity(256);
    let _ = std::fs::File::open(&real).and_then(|f| f.take(256).read_to_end(&mut head));
    let interpreter = if head.starts_with(b"\x7fELF") {
        Interpreter::Binary
    } else {
        match rules::parse_shebang(&head) {
            None => Interpreter::NoShebang,
            Some((program, argument)) => {
                let via_env = rules::is_env(&program)
                    .then(|| argument.as_deref().and_then(rules::env_command))
                    .flatten()
                    .map(|command| (command.to_string(), on_path(command)));
                Interpreter::Shebang {
                    usable: program.starts_with('/') && is_executable(Path::new(&program)),
                    program,
                    via_env,
                }
            }
        }
    };
    ScriptFacts::Present {
        executable: meta.permissions().mode() & 0o111 != 0,
        interpreter,
    }
}

fn user_facts(name: &str) -> UserFacts {
    match nix::unistd::User::from_name(name) {
        Ok(Some(user)) => {
            let shell = user.shell.display().to_string();
            let refuses = ["nologin", "false"]
                .iter()
                .any(|s| user.shell.file_name().is_some_and(|n| n == *s));
            if refuses {
                UserFacts::NoLogin { shell }
            } else {
                UserFacts::Usable
            }
        }
        _ => UserFacts::Missing,
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `command` would be found on this process's PATH (the agent's
/// environment is what hooks inherit).
fn on_path(command: &str) -> bool {
    if command.contains('/') {
        return is_executable(Path::new(command));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(command)))
}

#[cfg(test)]
mod tests;
