use std::os::unix::fs::MetadataExt;

use super::*;

fn files(group: &Path, id: &str) -> DeploymentFiles {
    let folder = group.join(id);
    DeploymentFiles {
        archive_dir: folder.join("deployment-archive"),
        bundle_file: folder.join("bundle.tar"),
        etag_record: folder.join(".bundle-etag"),
        folder,
    }
}

/// A group folder with deployment `d-PREV` unpacked and its bundle.
fn group_with_source() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let group = tmp.path().join("g-1");
    let source = files(&group, "d-PREV");
    fs::create_dir_all(source.archive_dir.join("scripts")).unwrap();
    fs::write(
        source.archive_dir.join("appspec.yml"),
        "version: 0.0\nos: linux\n",
    )
    .unwrap();
    fs::write(source.archive_dir.join("scripts/start.sh"), "#!/bin/sh\n").unwrap();
    fs::write(&source.bundle_file, "bundle bytes").unwrap();
    fs::write(&source.etag_record, "abc123").unwrap();
    fs::create_dir_all(group.join("d-NEW")).unwrap();
    (tmp, group)
}

fn reuse(group: &Path, source_id: &str) -> Result<(), ReuseRefused> {
    reuse_archive(
        group,
        source_id,
        "d-NEW",
        "appspec.yml",
        &files(group, source_id),
        &files(group, "d-NEW"),
    )
}

#[test]
fn only_deployment_ids_are_taken() {
    for good in ["d-A1B2C3D4E", "d-0", "d-ABCDEFGHI"] {
        assert!(is_deployment_id(good), "{good}");
    }
    let long = format!("d-{}", "A".repeat(63));
    for bad in [
        "d-../../etc",
        "d-A/B",
        "../d-ABC",
        "/d-ABC",
        "d-A.B",
        "d-",
        "",
        "d-abc",
        "x-ABC",
        "d-A B",
        "d-A\0B",
        &long,
    ] {
        assert!(!is_deployment_id(bad), "{bad:?}");
    }
}

#[test]
fn the_archive_is_copied_and_the_bundle_hard_linked() {
    let (_tmp, group) = group_with_source();
    reuse(&group, "d-PREV").unwrap();
    let (source, target) = (files(&group, "d-PREV"), files(&group, "d-NEW"));
    assert_eq!(
        fs::read_to_string(target.archive_dir.join("scripts/start.sh")).unwrap(),
        "#!/bin/sh\n"
    );
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&target.bundle_file),
        ino(&source.bundle_file),
        "hard-linked"
    );
    assert_ne!(
        ino(&target.archive_dir.join("appspec.yml")),
        ino(&source.archive_dir.join("appspec.yml")),
        "copied"
    );
    assert_eq!(fs::read_to_string(&target.etag_record).unwrap(), "abc123");
    // Retention removing the source leaves the copy whole.
    fs::remove_dir_all(&source.folder).unwrap();
    assert_eq!(
        fs::read_to_string(&target.bundle_file).unwrap(),
        "bundle bytes"
    );
}

#[test]
fn each_refusal_names_its_reason_and_leaves_nothing() {
    let (_tmp, group) = group_with_source();
    let source = files(&group, "d-PREV");
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("d-../x", Box::new(|| {}), "is not a deployment id"),
        ("d-NEW", Box::new(|| {}), "its own folder"),
        ("d-GONE", Box::new(|| {}), "is not on this host"),
        (
            "d-PREV",
            Box::new(|| {
                fs::remove_file(files(&group, "d-PREV").archive_dir.join("appspec.yml")).unwrap()
            }),
            "has no appspec",
        ),
        (
            "d-PREV",
            Box::new(|| {
                fs::remove_dir_all(files(&group, "d-PREV").archive_dir.join("scripts")).unwrap()
            }),
            "is empty",
        ),
    ];
    for (id, prepare, reason) in cases {
        prepare();
        let refused = reuse(&group, id).unwrap_err().to_string();
        assert!(refused.contains(reason), "{id}: {refused}");
        let target = files(&group, "d-NEW");
        assert!(
            !target.archive_dir.exists() && !target.bundle_file.exists(),
            "{id}: nothing left"
        );
    }
    assert!(source.bundle_file.exists(), "the source is never touched");
}

#[test]
fn a_source_reached_through_a_link_out_of_the_group_is_refused() {
    let (tmp, group) = group_with_source();
    let elsewhere = tmp.path().join("elsewhere");
    fs::rename(group.join("d-PREV"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, group.join("d-PREV")).unwrap();
    let refused = reuse(&group, "d-PREV").unwrap_err().to_string();
    assert!(
        refused.contains("outside the deployment group"),
        "{refused}"
    );
    assert!(!files(&group, "d-NEW").archive_dir.exists());
}
