//! Fuzz target: a zip bundle, central directory and all. The agent reads the
//! end-of-central-directory record and the central directory itself (the
//! entry count, sizes and offsets a bomb lies about) before it unpacks; any
//! bytes must end in an unpacked archive or an error, never a panic, and
//! nothing may be created outside the archive directory.

use std::fs;

use codedeploy_agent::bundle::unpack;
use codedeploy_agent::deployment_spec::BundleType;

#[path = "scratch_tree.rs"]
mod scratch_tree;
use scratch_tree::tree;

pub fn run(data: &[u8]) {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let root = scratch.path();
    let bundle_file = root.join("bundle.zip");
    fs::write(&bundle_file, data).expect("write the bundle");
    let archive_dir = root.join("deployment-archive");
    let unpacked = unpack(&bundle_file, BundleType::Zip, &archive_dir);
    if let Err(error) = &unpacked {
        assert!(
            !error.to_string().is_empty(),
            "an unpack error without a message"
        );
    }
    for path in tree(root) {
        assert!(
            path == bundle_file || path.starts_with(&archive_dir),
            "{} was created outside the archive directory",
            path.display()
        );
    }
}
