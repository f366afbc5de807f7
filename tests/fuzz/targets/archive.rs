//! Fuzz target: unpacking a bundle and planning its install. The first byte
//! picks tar, tgz or zip; the rest is the bundle. Whatever the bytes, the
//! unpacker must not panic and must not create anything outside the archive
//! directory; when the bundle unpacks and holds an appspec, planning the
//! install from the unpacked tree must not panic either.

use std::fs;
use std::path::Path;

use codedeploy_agent::appspec::{self, FileExistsBehavior};
use codedeploy_agent::bundle::unpack;
use codedeploy_agent::deployment_spec::BundleType;
use codedeploy_agent::install::{plan, Existing, FsRevision};

#[path = "scratch_tree.rs"]
mod scratch_tree;
use scratch_tree::tree;

pub fn run(data: &[u8]) {
    let Some((&selector, bundle)) = data.split_first() else {
        return;
    };
    let bundle_type = match selector % 3 {
        0 => BundleType::Tar,
        1 => BundleType::Tgz,
        _ => BundleType::Zip,
    };
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let root = scratch.path();
    let bundle_file = root.join("bundle");
    fs::write(&bundle_file, bundle).expect("write the bundle");
    let archive_dir = root.join("deployment-archive");

    let unpacked = unpack(&bundle_file, bundle_type, &archive_dir);

    for path in tree(root) {
        assert!(
            path == bundle_file || path.starts_with(&archive_dir),
            "unpacking wrote outside the archive directory: {}",
            path.display()
        );
    }
    if unpacked.is_err() {
        return;
    }
    let Ok(spec) = appspec::load(
        &archive_dir,
        "appspec.yml",
        appspec::AppSpecLookup::InstallFallback,
    ) else {
        return;
    };
    let Ok(revision) = FsRevision::new(&archive_dir) else {
        return;
    };
    let nothing_installed = |_: &Path| Existing::Missing;
    let _ = plan(
        &spec,
        &revision,
        &nothing_installed,
        FileExistsBehavior::Overwrite,
    );
}
