//! Fuzz target, structure-aware: the bytes choose a revision out of hostile
//! parts instead of being the revision. Entry names and appspec paths are
//! built from pieces that hold control characters (a newline followed by an
//! absolute path, NUL, ESC, CR, DEL), and the appspec's numbers from the
//! extremes (`i64::MAX`, `2^64`, negative, exponents, `.inf`). The tar is
//! written with PAX `path` records, and a name holding a newline as a GNU
//! long name (the tar crate splits PAX records at every newline, so a PAX
//! `path` holding one is refused as malformed before its name is looked at),
//! so that any byte reaches the unpacker.
//!
//! What must hold, whatever the choice:
//! - a parsed appspec has no path with a control character, and every hook
//!   timeout is within the bound, so that a deadline computed from it
//!   exists (`Instant::now() + timeout` cannot overflow);
//! - an unpacked revision has no name with a control character;
//! - when both pass, Install (run for real into a scratch host) records in
//!   its cleanup file only paths below the destination, and the next
//!   Install's replay of that file removes nothing outside it.

use std::fs;
use std::path::Path;
use std::time::Instant;

use codedeploy_agent::appspec::{self, FileExistsBehavior};
use codedeploy_agent::bundle::unpack;
use codedeploy_agent::config::InstallPolicy;
use codedeploy_agent::deployment_spec::BundleType;
use codedeploy_agent::install::{self, parse_cleanup, CleanupEntry, InstallRequest};
use codedeploy_agent::shutdown;

/// Path pieces: honest ones and every kind of control character.
const PIECES: &[&str] = &[
    "app",
    "index.html",
    "a b",
    "é",
    "x\n/etc/passwd",
    "\n",
    "nul\0byte",
    "\u{1b}[31mred",
    "cr\r",
    "tab\t",
    "del\u{7f}",
    "\u{85}next-line",
    "..",
    ".",
    "",
    "appspec.yml",
];

/// Numbers an appspec may hold, from the honest to the extreme.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "60",
    "3600",
    "3601",
    "-1",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e308",
    "1.5",
    ".inf",
    "-.inf",
    ".nan",
    "0x7fffffffffffffff",
    "0o777",
    "\"300\"",
];

const EVENTS: &[&str] = &[
    "BeforeInstall",
    "AfterInstall",
    "ApplicationStart",
    "ValidateService",
];

/// Takes choices from the fuzzer's bytes; zeros once they run out.
struct Choices<'d>(&'d [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[usize::from(self.byte()) % from.len()]
    }

    /// One to three pieces joined by `/`.
    fn path(&mut self) -> String {
        let pieces = 1 + usize::from(self.byte()) % 3;
        (0..pieces)
            .map(|_| self.pick(PIECES))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A YAML double-quoted scalar holding `text` exactly, control characters
/// included (as escapes, so that they reach the parser as characters).
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The appspec: one or two `files` entries, a permission, a hook.
fn appspec_text(choices: &mut Choices, destination: &Path) -> String {
    let mut text = String::from("version: 0.0\nos: linux\nfiles:\n");
    for _ in 0..1 + choices.byte() % 2 {
        let source = match choices.byte() % 3 {
            0 => "/".to_string(),
            _ => choices.path(),
        };
        let below = choices.path();
        text.push_str(&format!(
            "  - source: {}\n    destination: {}\n",
            quoted(&source),
            quoted(&format!("{}/{below}", destination.display()))
        ));
    }
    if choices.byte() % 2 == 0 {
        text.push_str(&format!(
            "permissions:\n  - object: {}\n    mode: {}\n    owner: {}\n",
            quoted(&format!("{}/{}", destination.display(), choices.path())),
            choices.pick(NUMBERS),
            quoted(choices.pick(PIECES)),
        ));
    }
    text.push_str(&format!(
        "hooks:\n  {}:\n    - location: {}\n      timeout: {}\n      runas: {}\n",
        choices.pick(EVENTS),
        quoted(&choices.path()),
        choices.pick(NUMBERS),
        quoted(choices.pick(PIECES)),
    ));
    text
}

/// A tar whose entries' names come from [`Choices::path`], written as PAX
/// `path` records so that every byte of them survives; a name holding a
/// newline, which a PAX record cannot carry through the tar crate's reader,
/// as a GNU long name (`././@LongLink`), which carries every byte but NUL.
/// Names without a newline are written as before, so that a corpus input
/// keeps its meaning.
fn tar_of(choices: &mut Choices, appspec: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let append =
        |builder: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8]| {
            if name.contains('\n') {
                let mut long = name.as_bytes().to_vec();
                long.push(0);
                let mut header = tar::Header::new_gnu();
                let _ = header.set_path("././@LongLink");
                header.set_entry_type(tar::EntryType::GNULongName);
                header.set_size(long.len() as u64);
                header.set_cksum();
                let _ = builder.append(&header, long.as_slice());
                let mut header = tar::Header::new_gnu();
                let _ = header.set_path("placeholder");
                header.set_entry_type(kind);
                header.set_mode(0o755);
                header.set_size(data.len() as u64);
                header.set_cksum();
                let _ = builder.append(&header, data);
                return;
            }
            let record = format!(" path={name}\n");
            let mut length = record.len() + 1;
            while format!("{length}").len() + record.len() != length {
                length += 1;
            }
            let pax = format!("{length}{record}");
            let mut header = tar::Header::new_ustar();
            let _ = header.set_path("PaxHeaders/entry");
            header.set_entry_type(tar::EntryType::XHeader);
            header.set_size(pax.len() as u64);
            header.set_cksum();
            let _ = builder.append(&header, pax.as_bytes());
            let mut header = tar::Header::new_ustar();
            let _ = header.set_path("placeholder");
            header.set_entry_type(kind);
            header.set_mode(0o755);
            header.set_size(data.len() as u64);
            header.set_cksum();
            let _ = builder.append(&header, data);
        };
    append(
        &mut builder,
        "appspec.yml",
        tar::EntryType::Regular,
        appspec.as_bytes(),
    );
    for _ in 0..1 + choices.byte() % 6 {
        let name = choices.path();
        let kind = match choices.byte() % 4 {
            0 => tar::EntryType::Directory,
            _ => tar::EntryType::Regular,
        };
        append(&mut builder, &name, kind, b"content\n");
    }
    builder.into_inner().unwrap_or_default()
}

/// Every name below `root`, without following links.
fn names_below(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pending.push(entry.path());
            }
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

pub fn run(data: &[u8]) {
    let mut choices = Choices(data);
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let root = scratch.path();
    // Deep enough that the `..` pieces of a destination stay in the scratch
    // host (at most three of them follow it).
    let destination = root.join("host/1/2/3/srv");
    let canary = root.join("host/canary");
    fs::create_dir_all(&destination).expect("the destination");
    fs::write(&canary, "must stay").expect("the canary");

    let text = appspec_text(&mut choices, &destination);
    let parsed = appspec::parse(&text, Path::new("appspec.yml"));
    if let Ok(spec) = &parsed {
        for mapping in &spec.files {
            let source = mapping.source.written();
            assert!(
                !has_control(source),
                "a source with a control character passed: {source:?}"
            );
            let written = mapping.destination.to_string_lossy();
            assert!(
                !has_control(&written),
                "a destination with a control character passed: {written:?}"
            );
        }
        for script in spec.hooks.iter().flat_map(|event| &event.scripts) {
            assert!(
                Instant::now().checked_add(script.timeout).is_some(),
                "a timeout no deadline can hold passed: {:?}",
                script.timeout
            );
            assert!(
                script.timeout <= appspec::HookScript::MAX_TIMEOUT,
                "a timeout over the bound passed: {:?}",
                script.timeout
            );
        }
    }

    let bundle = root.join("bundle.tar");
    fs::write(&bundle, tar_of(&mut choices, &text)).expect("the bundle");
    let archive = root.join("deployment-archive");
    let unpacked = unpack(&bundle, BundleType::Tar, &archive);
    if unpacked.is_ok() {
        for name in names_below(&archive) {
            assert!(
                !has_control(&name),
                "an entry name with a control character was unpacked: {name:?}"
            );
        }
    }
    let (Ok(spec), Ok(())) = (parsed, unpacked) else {
        return;
    };

    let cleanup_file = root.join("state/group-cleanup");
    let instructions_file = root.join("state/group-install.json");
    let stop = shutdown::never();
    let request = InstallRequest {
        appspec: &spec,
        archive_dir: &archive,
        file_exists_behavior: FileExistsBehavior::Overwrite,
        cleanup_file: &cleanup_file,
        instructions_file: &instructions_file,
        policy: InstallPolicy::default(),
        stop: &stop,
    };
    let _ = install::install(&request);
    let recorded = fs::read(&cleanup_file).unwrap_or_default();
    for entry in parse_cleanup(&recorded) {
        if let CleanupEntry::Path(path) = entry {
            // Below a destination the appspec names, or a folder made on the way.
            let created = spec
                .files
                .iter()
                .any(|m| path.starts_with(&m.destination) || m.destination.starts_with(&path));
            assert!(
                created && path.starts_with(root.join("host")),
                "the cleanup file records a path Install did not create: {}",
                path.display()
            );
        }
    }
    // The replay (the next Install's first step) must leave the rest alone.
    let _ = install::run_cleanup(&cleanup_file, &instructions_file);
    assert!(
        canary.exists(),
        "replaying the cleanup file removed a file outside the destination"
    );
}
