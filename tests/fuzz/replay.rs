//! Replays every committed fuzz corpus file through its fuzz target, on the
//! stable toolchain, as a regression test: an input that once crashed a
//! target (saved under corpus/<target>/) must never crash it again.

// Each target is its own binary under cargo-fuzz, so the targets that share
// a helper (the scratch tree, the specification checks) each include it;
// here, where all of them are one crate, the helper is compiled once per
// target that includes it.
#![allow(clippy::duplicate_mod)]

use std::path::{Path, PathBuf};

#[path = "targets/agent_config.rs"]
mod agent_config_target;
#[path = "targets/appspec.rs"]
mod appspec_target;
#[path = "targets/archive.rs"]
mod archive_target;
#[path = "targets/commands_answers.rs"]
mod commands_answers_target;
#[path = "targets/deployment_spec.rs"]
mod deployment_spec_target;
#[path = "targets/hostile_revision.rs"]
mod hostile_revision_target;
#[path = "targets/install_plan.rs"]
mod install_plan_target;
#[path = "targets/on_premises.rs"]
mod on_premises_target;
#[path = "targets/zip.rs"]
mod zip_target;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "corpus {target} has only {} seeds",
        files.len()
    );
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    for file in corpus(target) {
        let data = std::fs::read(&file).expect("a corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} crashed on {}", file.display());
    }
}

#[test]
fn every_corpus_replays_without_a_crash() {
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 9] = [
        ("agent_config", agent_config_target::run),
        ("appspec", appspec_target::run),
        ("archive", archive_target::run),
        ("commands_answers", commands_answers_target::run),
        ("deployment_spec", deployment_spec_target::run),
        ("hostile_revision", hostile_revision_target::run),
        ("install_plan", install_plan_target::run),
        ("on_premises", on_premises_target::run),
        ("zip", zip_target::run),
    ];
    for (target, run) in targets {
        replay(target, run);
    }
}
