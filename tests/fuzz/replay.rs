//! Replays every committed fuzz corpus file through its fuzz target, on the
//! stable toolchain, as a regression test: an input that once crashed a
//! target (saved under corpus/<target>/) must never crash it again.

use std::path::{Path, PathBuf};

#[path = "targets/appspec.rs"]
mod appspec_target;
#[path = "targets/archive.rs"]
mod archive_target;
#[path = "targets/deployment_spec.rs"]
mod deployment_spec_target;
#[path = "targets/hostile_revision.rs"]
mod hostile_revision_target;

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
fn appspec_corpus_replays_without_a_crash() {
    replay("appspec", appspec_target::run);
}

#[test]
fn deployment_spec_corpus_replays_without_a_crash() {
    replay("deployment_spec", deployment_spec_target::run);
}

#[test]
fn archive_corpus_replays_without_a_crash() {
    replay("archive", archive_target::run);
}

#[test]
fn hostile_revision_corpus_replays_without_a_crash() {
    replay("hostile_revision", hostile_revision_target::run);
}
