//! Real archives, built here, unpacked into temporary directories.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::target::link_stays_inside;
use super::zip::zip_declared_entries;
use super::*;
// The crates, not the readers of the same names beside this module.
use ::{tar, zip};

/// One entry, with its name written raw so that hostile names survive.
pub(in crate::bundle) struct Entry<'a> {
    name: &'a str,
    kind: tar::EntryType,
    mode: u32,
    data: &'a [u8],
    link: &'a str,
}

pub(in crate::bundle) fn file<'a>(name: &'a str, mode: u32, data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: tar::EntryType::Regular,
        mode,
        data,
        link: "",
    }
}

pub(in crate::bundle) fn dir(name: &str, mode: u32) -> Entry<'_> {
    Entry {
        name,
        kind: tar::EntryType::Directory,
        mode,
        data: b"",
        link: "",
    }
}

pub(in crate::bundle) fn symlink_entry<'a>(name: &'a str, link: &'a str) -> Entry<'a> {
    Entry {
        name,
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        data: b"",
        link,
    }
}

pub(in crate::bundle) fn hard_link<'a>(name: &'a str, link: &'a str) -> Entry<'a> {
    Entry {
        name,
        kind: tar::EntryType::Link,
        mode: 0o644,
        data: b"",
        link,
    }
}

pub(in crate::bundle) fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let raw = header.as_old_mut();
        raw.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        raw.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        header.set_entry_type(e.kind);
        header.set_mode(e.mode);
        header.set_size(e.data.len() as u64);
        header.set_mtime(1_600_000_000);
        header.set_cksum();
        builder.append(&header, e.data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn write_bundle(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join("bundle.tar");
    fs::write(&path, bytes).unwrap();
    path
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn revision_entries() -> Vec<Entry<'static>> {
    vec![
        file("appspec.yml", 0o644, b"version: 0.0\nos: linux\n"),
        dir("scripts/", 0o750),
        file("scripts/start.sh", 0o755, b"#!/bin/sh\necho hi\n"),
        file("config/app.conf", 0o640, b"key=value\n"),
        symlink_entry("current.conf", "config/app.conf"),
        hard_link("config/copy.conf", "config/app.conf"),
        dir("readonly/", 0o555),
        file("readonly/keep", 0o444, b"x"),
    ]
}

fn assert_revision_unpacked(archive: &Path) {
    assert_eq!(
        fs::read(archive.join("scripts/start.sh")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode_of(&archive.join("scripts/start.sh")), 0o755);
    assert_eq!(mode_of(&archive.join("scripts")), 0o750);
    assert_eq!(mode_of(&archive.join("config/app.conf")), 0o640);
    assert_eq!(mode_of(&archive.join("readonly")), 0o555);
    assert_eq!(
        fs::read_link(archive.join("current.conf")).unwrap(),
        Path::new("config/app.conf")
    );
    assert_eq!(
        fs::read(archive.join("config/copy.conf")).unwrap(),
        b"key=value\n"
    );
    assert_eq!(
        fs::metadata(archive.join("config/app.conf"))
            .unwrap()
            .mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::metadata(archive.join("scripts")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn tar_bundles_unpack_with_modes_links_and_times() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = write_bundle(tmp.path(), &tar_bytes(&revision_entries()));
    let archive = tmp.path().join("deployment-archive");
    unpack(&bundle, BundleType::Tar, &archive).unwrap();
    assert_revision_unpacked(&archive);

    // A second unpack replaces the first, read-only directories included.
    let bundle = write_bundle(
        tmp.path(),
        &tar_bytes(&[file("appspec.yml", 0o644, b"new")]),
    );
    unpack(&bundle, BundleType::Tar, &archive).unwrap();
    assert_eq!(fs::read_dir(&archive).unwrap().count(), 1);
    assert_eq!(fs::read(archive.join("appspec.yml")).unwrap(), b"new");
}

#[test]
fn tgz_bundles_unpack_like_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes(&revision_entries())).unwrap();
    let bundle = write_bundle(tmp.path(), &gz.finish().unwrap());
    let archive = tmp.path().join("deployment-archive");
    unpack(&bundle, BundleType::Tgz, &archive).unwrap();
    assert_revision_unpacked(&archive);
}

fn zip_bytes(build: impl FnOnce(&mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    build(&mut writer);
    writer.finish().unwrap().into_inner()
}

#[test]
fn zip_bundles_unpack_with_modes_and_links() {
    use zip::write::SimpleFileOptions;
    let tmp = tempfile::tempdir().unwrap();
    let bytes = zip_bytes(|w| {
        w.start_file("appspec.yml", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"version: 0.0\n").unwrap();
        w.add_directory(
            "scripts/",
            SimpleFileOptions::default().unix_permissions(0o750),
        )
        .unwrap();
        w.start_file(
            "scripts/start.sh",
            SimpleFileOptions::default().unix_permissions(0o4755),
        )
        .unwrap();
        w.write_all(b"#!/bin/sh\n").unwrap();
        w.start_file(
            "deep/nested/file.txt",
            SimpleFileOptions::default().unix_permissions(0o600),
        )
        .unwrap();
        w.write_all(b"deep").unwrap();
        w.add_symlink("link", "deep/nested/file.txt", SimpleFileOptions::default())
            .unwrap();
    });
    let bundle = write_bundle(tmp.path(), &bytes);
    let archive = tmp.path().join("deployment-archive");
    unpack(&bundle, BundleType::Zip, &archive).unwrap();
    assert_eq!(
        fs::read(archive.join("appspec.yml")).unwrap(),
        b"version: 0.0\n"
    );
    // setuid is dropped, as unzip does without -K.
    assert_eq!(mode_of(&archive.join("scripts/start.sh")), 0o755);
    assert_eq!(mode_of(&archive.join("scripts")), 0o750);
    assert_eq!(mode_of(&archive.join("deep/nested/file.txt")), 0o600);
    assert_eq!(
        fs::read_link(archive.join("link")).unwrap(),
        Path::new("deep/nested/file.txt")
    );
}

/// Every hostile archive fails, names the entry, and writes nothing outside.
#[test]
fn entries_that_would_escape_the_archive_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"untouched").unwrap();
    let outside_str = outside.to_str().unwrap().to_string();
    let victim = format!("{outside_str}/victim");

    let cases: Vec<(Vec<Entry>, &str)> = vec![
        (
            vec![file("../x", 0o644, b"evil")],
            "entry '../x': its path contains '..'",
        ),
        (vec![file("a/../../x", 0o644, b"evil")], "entry 'a/../../x'"),
        (vec![file(&victim, 0o644, b"evil")], "its path is absolute"),
        (
            vec![symlink_entry("link", &outside_str)],
            "entry 'link': it is a symbolic link to",
        ),
        // Writing through a link is refused even when the link stays inside.
        (
            vec![
                dir("inside/", 0o755),
                symlink_entry("link", "inside"),
                file("link/victim", 0o644, b"evil"),
            ],
            "entry 'link/victim': it would be written through the symbolic link 'link'",
        ),
        (
            vec![
                dir("inside/", 0o755),
                file("inside/victim", 0o644, b"x"),
                symlink_entry("link", "inside"),
                hard_link("stolen", "link/victim"),
            ],
            "entry 'stolen': it would be written through the symbolic link 'link'",
        ),
        (
            vec![hard_link("stolen", &victim)],
            "entry 'stolen': it is a hard link to the absolute path",
        ),
        (
            vec![hard_link("stolen", "../outside/victim")],
            "entry 'stolen': it is a hard link to '../outside/victim', which climbs out of the archive with '..'",
        ),
        (
            vec![Entry {
                name: "dev",
                kind: tar::EntryType::Char,
                mode: 0o600,
                data: b"",
                link: "",
            }],
            "entry 'dev': device nodes and fifos are not allowed",
        ),
        (
            vec![Entry {
                name: "pipe",
                kind: tar::EntryType::Fifo,
                mode: 0o600,
                data: b"",
                link: "",
            }],
            "entry 'pipe': device nodes and fifos",
        ),
    ];
    for (entries, fragment) in cases {
        let bundle = write_bundle(tmp.path(), &tar_bytes(&entries));
        let archive = tmp.path().join("deployment-archive");
        let err = unpack(&bundle, BundleType::Tar, &archive).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("Error extracting tar archive: "),
            "{message}"
        );
        assert!(
            message.contains(fragment),
            "expected «{fragment}» in {message}"
        );
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"untouched");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "{message}");
        assert!(!tmp.path().join("x").exists());
    }
}

#[test]
fn zip_entries_that_would_escape_are_refused() {
    use zip::write::SimpleFileOptions;
    let tmp = tempfile::tempdir().unwrap();
    for name in ["../x", "/tmp/abs-x", "a/../../x"] {
        let bytes = zip_bytes(|w| {
            w.start_file(name, SimpleFileOptions::default()).unwrap();
            w.write_all(b"evil").unwrap();
        });
        let bundle = write_bundle(tmp.path(), &bytes);
        let err = unpack(&bundle, BundleType::Zip, &tmp.path().join("archive")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("Error extracting zip archive: entry '"),
            "{message}"
        );
        assert!(message.contains(name), "{message}");
    }
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn a_later_entry_replaces_a_symlink_instead_of_writing_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = write_bundle(
        tmp.path(),
        &tar_bytes(&[
            file("victim", 0o644, b"untouched"),
            symlink_entry("f", "victim"),
            file("f", 0o644, b"new"),
        ]),
    );
    let archive = tmp.path().join("deployment-archive");
    unpack(&bundle, BundleType::Tar, &archive).unwrap();
    assert_eq!(fs::read(archive.join("victim")).unwrap(), b"untouched");
    assert!(fs::symlink_metadata(archive.join("f")).unwrap().is_file());
    assert_eq!(fs::read(archive.join("f")).unwrap(), b"new");
}

#[test]
fn broken_archives_fail_with_the_official_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = tar_bytes(&[file("appspec.yml", 0o644, &[b'x'; 2000])]);
    bytes.truncate(1024);
    let bundle = write_bundle(tmp.path(), &bytes);
    let err = unpack(&bundle, BundleType::Tar, &tmp.path().join("a")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Error extracting tar archive: "),
        "{err}"
    );

    let bundle = write_bundle(tmp.path(), b"not a zip at all");
    let err = unpack(&bundle, BundleType::Zip, &tmp.path().join("a")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Error extracting zip archive: "),
        "{err}"
    );

    let err = unpack(&bundle, BundleType::Tgz, &tmp.path().join("a")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Error extracting tar archive: "),
        "{err}"
    );
}

fn top_level(archive: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_single_top_level_folder_holding_the_appspec_becomes_the_root() {
    let cases: Vec<(Vec<Entry>, Vec<&str>)> = vec![
        // GitHub-style tarball: promoted.
        (
            vec![
                dir("owner-repo-abc123/", 0o755),
                file("owner-repo-abc123/appspec.yml", 0o644, b""),
                file("owner-repo-abc123/app.py", 0o644, b""),
            ],
            vec!["app.py", "appspec.yml"],
        ),
        // Any name containing "appspec", in any case.
        (
            vec![file("top/My-AppSpec.YAML", 0o644, b"")],
            vec!["My-AppSpec.YAML"],
        ),
        // A child named like the folder itself.
        (
            vec![
                file("app/appspec.yml", 0o644, b""),
                file("app/app/x", 0o644, b""),
            ],
            vec!["app", "appspec.yml"],
        ),
        // No appspec inside: kept.
        (vec![file("top/app.py", 0o644, b"")], vec!["top"]),
        // The appspec only deeper down: kept.
        (vec![file("top/sub/appspec.yml", 0o644, b"")], vec!["top"]),
        // Two top-level entries: kept.
        (
            vec![
                file("top/appspec.yml", 0o644, b""),
                file("README", 0o644, b""),
            ],
            vec!["README", "top"],
        ),
        // The single entry is a file: kept.
        (vec![file("appspec.yml", 0o644, b"")], vec!["appspec.yml"]),
        // A link to a folder is not a folder.
        (vec![symlink_entry("top", ".")], vec!["top"]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (entries, expected) in cases {
        let bundle = write_bundle(tmp.path(), &tar_bytes(&entries));
        let archive = tmp.path().join("deployment-archive");
        unpack(&bundle, BundleType::Tar, &archive).unwrap();
        assert_eq!(top_level(&archive), expected);
    }
    let archive = tmp.path().join("deployment-archive");
    let bundle = write_bundle(
        tmp.path(),
        &tar_bytes(&[
            file("app/appspec.yml", 0o644, b""),
            file("app/app/x", 0o644, b"inner"),
        ]),
    );
    unpack(&bundle, BundleType::Tar, &archive).unwrap();
    assert_eq!(fs::read(archive.join("app/x")).unwrap(), b"inner");
}

#[test]
fn directory_bundles_are_not_unpacked() {
    let tmp = tempfile::tempdir().unwrap();
    let err = unpack(tmp.path(), BundleType::Directory, &tmp.path().join("a")).unwrap_err();
    assert!(matches!(err, BundleError::NotAnArchive));
}

#[test]
fn link_targets_are_judged_from_where_the_link_is() {
    let cases: &[(&str, &str, bool)] = &[
        ("current.conf", "config/app.conf", true),
        ("web/styles", "../assets/css", true),
        ("a/b/c/up", "../../x", true),
        ("a/b/c/up", "../../../x", true),
        ("a/b/c/up", "../../../../x", false),
        ("top", "..", false),
        ("top", "./x/../../y", false),
        ("top", ".", true),
        ("dir/self", "./", true),
        ("abs", "/etc/passwd", false),
        ("abs", "/", false),
        ("empty", "", false),
    ];
    for (link, target, inside) in cases {
        assert_eq!(
            link_stays_inside(Path::new(link), Path::new(target)),
            *inside,
            "{link} -> {target}"
        );
    }
}

/// Each hardening key against the revisions it is about: refused with a
/// message naming the entry and the key, or unpacked as before.
#[test]
fn the_bundle_policy_decides_entry_by_entry() {
    use crate::config::{BundlePolicy, LinkPolicy, Ownership, SetIdBits};
    let default = BundlePolicy::default();
    let no_links = BundlePolicy {
        links: LinkPolicy::Refuse,
        ..default
    };
    let no_setid = BundlePolicy {
        setid_bits: SetIdBits::Refuse,
        ..default
    };
    let small = BundlePolicy {
        max_extraction_size: 10,
        ..default
    };
    let setuid = [file("bin/tool", 0o4755, b"#!/bin/sh\n")];
    let setgid_dir = [dir("shared/", 0o2775)];
    let inside_link = [
        file("config/app.conf", 0o644, b"x"),
        symlink_entry("current.conf", "config/app.conf"),
    ];
    let hard = [
        file("config/app.conf", 0o644, b"x"),
        hard_link("copy.conf", "config/app.conf"),
    ];
    let out_abs = [symlink_entry("passwd", "/etc/passwd")];
    let out_rel = [symlink_entry("deep/up", "../../secret")];
    let through = [
        dir("a/", 0o755),
        symlink_entry("a/here", "."),
        symlink_entry("a/escape", "here/../.."),
        file("a/keep", 0o644, b"x"),
    ];
    let exactly = [file("ten", 0o644, b"0123456789")];
    let too_big = [file("six", 0o644, b"012345"), file("five", 0o644, b"01234")];
    type Case<'a> = (&'a str, BundlePolicy, &'a [Entry<'a>], Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("setuid kept by default", default, &setuid, None),
        ("setuid refused", no_setid, &setuid, Some("entry 'bin/tool': its mode 4755 has the setuid or setgid bit (reject_unsafe_permissions_in_bundle is true)")),
        ("setgid directory refused", no_setid, &setgid_dir, Some("entry 'shared/': its mode 2775")),
        ("link inside kept", default, &inside_link, None),
        ("link inside refused", no_links, &inside_link, Some("entry 'current.conf': links are not allowed in a revision (reject_symlinks_in_bundle is true)")),
        ("hard link refused", no_links, &hard, Some("entry 'copy.conf': links are not allowed")),
        ("hard link kept", default, &hard, None),
        ("absolute link refused", default, &out_abs, Some("entry 'passwd': it is a symbolic link to '/etc/passwd', which leads outside the archive")),
        ("climbing link refused", default, &out_rel, Some("entry 'deep/up': it is a symbolic link to '../../secret', which leads outside")),
        ("link through a link refused", default, &through, Some("entry 'a/escape': it is a symbolic link that resolves to")),
        ("content exactly at the cap", small, &exactly, None),
        ("content over the cap", small, &too_big, Some("entry 'five': the revision unpacks to more than archive_max_extraction_size (10 bytes)")),
    ];
    for (what, policy, entries, refusal) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = write_bundle(tmp.path(), &tar_bytes(entries));
        let archive = tmp.path().join("deployment-archive");
        let result = unpack_with(
            &bundle,
            BundleType::Tar,
            &archive,
            &policy,
            &shutdown::never(),
        );
        match (refusal, result) {
            (None, Ok(())) => {}
            (Some(fragment), Err(e)) => {
                let message = e.to_string();
                assert!(
                    message.starts_with("Error extracting tar archive: ")
                        && message.contains(fragment),
                    "{what}: expected «{fragment}» in {message}"
                );
            }
            (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
    }
    // Owners: kept from the archive as root, unless ignore_ownership_in_bundle.
    if Uid::effective().is_root() {
        let owned = |policy: &BundlePolicy| {
            let tmp = tempfile::tempdir().unwrap();
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_path("owned").unwrap();
            header.set_mode(0o644);
            header.set_size(1);
            header.set_uid(4242);
            header.set_gid(4343);
            header.set_cksum();
            builder.append(&header, &b"x"[..]).unwrap();
            let bundle = write_bundle(tmp.path(), &builder.into_inner().unwrap());
            let archive = tmp.path().join("a");
            unpack_with(
                &bundle,
                BundleType::Tar,
                &archive,
                policy,
                &shutdown::never(),
            )
            .unwrap();
            let meta = fs::metadata(archive.join("owned")).unwrap();
            (meta.uid(), meta.gid())
        };
        assert_eq!(owned(&default), (4242, 4343));
        let ignore = BundlePolicy {
            ownership: Ownership::Agent,
            ..default
        };
        assert_eq!(owned(&ignore), (0, 0));
    }
}

/// Sets every uncompressed-size field of a zip (local header and central
/// directory) to `size`, as a zip bomb's lying headers do.
fn with_declared_size(mut bytes: Vec<u8>, size: u32) -> Vec<u8> {
    let fields: Vec<usize> = (0..bytes.len().saturating_sub(4))
        .filter_map(|i| match &bytes[i..i + 4] {
            b"PK\x03\x04" => Some(i + 22),
            b"PK\x01\x02" => Some(i + 24),
            _ => None,
        })
        .collect();
    for at in fields {
        bytes[at..at + 4].copy_from_slice(&size.to_le_bytes());
    }
    bytes
}

#[test]
fn zip_bombs_are_refused_before_anything_is_written() {
    use zip::write::SimpleFileOptions;
    let tmp = tempfile::tempdir().unwrap();
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let honest = zip_bytes(|w| {
        w.start_file("appspec.yml", deflated).unwrap();
        w.write_all(b"version: 0.0\n").unwrap();
        w.start_file("zeros.bin", deflated).unwrap();
        w.write_all(&vec![0u8; 8 << 20]).unwrap();
    });
    // Honest zeros reach about 1000:1 and are fine.
    let bundle = write_bundle(tmp.path(), &honest);
    unpack(&bundle, BundleType::Zip, &tmp.path().join("honest")).unwrap();
    assert_eq!(
        fs::metadata(tmp.path().join("honest/zeros.bin"))
            .unwrap()
            .len(),
        8 << 20
    );

    // The same archive whose headers claim 4 GB per entry.
    let lying = with_declared_size(honest, 4_000_000_000);
    let bundle = write_bundle(tmp.path(), &lying);
    let archive = tmp.path().join("lying");
    let message = unpack(&bundle, BundleType::Zip, &archive)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("claims 4000000000 bytes") && message.contains("a zip bomb"),
        "{message}"
    );
    assert!(
        fs::read_dir(&archive).map(|d| d.count()).unwrap_or(0) == 0,
        "nothing was written"
    );
}

const FIFTY_ENTRIES_REFUSED: &str = "the revision has more than 50 entries (archive_max_entries); raise that key if this revision is genuinely that large";

fn capped_at_fifty() -> BundlePolicy {
    BundlePolicy {
        max_entries: 50,
        ..BundlePolicy::default()
    }
}

/// `count` (6 or more) entry names of every kind: the archive's root, a
/// directory, files, a symbolic link and a hard link.
fn entry_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i {
            0 => "./".to_string(),
            1 => "d/".to_string(),
            _ if i == count - 2 => "link".to_string(),
            _ if i == count - 1 => "hard".to_string(),
            _ => format!("d/f{i}"),
        })
        .collect()
}

fn many_entries(names: &[String]) -> Vec<Entry<'_>> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "./" | "d/" => dir(name, 0o755),
            "link" => symlink_entry(name, "d/f2"),
            "hard" => hard_link(name, "d/f3"),
            _ => file(name, 0o644, b""),
        })
        .collect()
}

#[test]
fn the_entry_past_archive_max_entries_fails_the_tar_and_nothing_stays() {
    let policy = capped_at_fifty();
    for count in [50, 51] {
        let names = entry_names(count);
        let tar = tar_bytes(&many_entries(&names));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let tgz = gz.finish().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("deployment-archive");
        let results = [
            (
                "tar",
                unpack_with(
                    &write_bundle(tmp.path(), &tar),
                    BundleType::Tar,
                    &archive,
                    &policy,
                    &shutdown::never(),
                ),
            ),
            (
                "tgz",
                unpack_with(
                    &write_bundle(tmp.path(), &tgz),
                    BundleType::Tgz,
                    &archive,
                    &policy,
                    &shutdown::never(),
                ),
            ),
            (
                "streamed tgz",
                unpack_tar_stream(
                    &tgz[..],
                    TarCompression::Gzip,
                    &archive,
                    &policy,
                    &shutdown::never(),
                ),
            ),
        ];
        for (what, result) in results {
            if count == 50 {
                result.unwrap_or_else(|e| panic!("{what}: exactly 50 entries: {e}"));
                continue;
            }
            let message = result.expect_err(what).to_string();
            assert_eq!(
                message,
                format!("Error extracting tar archive: {FIFTY_ENTRIES_REFUSED}"),
                "{what}"
            );
            assert!(
                !archive.exists(),
                "{what}: the half-unpacked archive is removed"
            );
        }
        if count == 50 {
            // The last unpack (the streamed one) holds every entry.
            assert_eq!(fs::read_dir(archive.join("d")).unwrap().count(), 46);
            assert_eq!(
                fs::read_link(archive.join("link")).unwrap(),
                Path::new("d/f2")
            );
            assert!(archive.join("hard").is_file());
        }
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1 + usize::from(count == 50),
            "only the bundle (and an accepted archive) in {}",
            tmp.path().display()
        );
    }
}

fn zip_of(count: usize, first: &str) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    zip_bytes(|w| {
        w.start_file(first, SimpleFileOptions::default()).unwrap();
        w.add_directory("d/", SimpleFileOptions::default()).unwrap();
        w.add_symlink("link", "d/f2", SimpleFileOptions::default())
            .unwrap();
        for i in 3..count {
            w.start_file(format!("d/f{i}"), SimpleFileOptions::default())
                .unwrap();
        }
    })
}

#[test]
fn a_zip_over_archive_max_entries_is_refused_before_anything_is_written() {
    let policy = capped_at_fifty();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("deployment-archive");

    let bundle = write_bundle(tmp.path(), &zip_of(50, "appspec.yml"));
    unpack_with(
        &bundle,
        BundleType::Zip,
        &archive,
        &policy,
        &shutdown::never(),
    )
    .unwrap();
    assert_eq!(fs::read_dir(archive.join("d")).unwrap().count(), 47);

    // The first entry would be refused for its path if extraction had begun:
    // the count is judged on the central directory, before any entry.
    let bundle = write_bundle(tmp.path(), &zip_of(51, "../escaped"));
    let message = unpack_with(
        &bundle,
        BundleType::Zip,
        &archive,
        &policy,
        &shutdown::never(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        format!("Error extracting zip archive: {FIFTY_ENTRIES_REFUSED}")
    );
    assert!(
        fs::read_dir(&archive).map(|d| d.count()).unwrap_or(0) == 0,
        "nothing was written"
    );
    assert!(!tmp.path().join("escaped").exists());
}

/// `bytes` (a zip without a comment) rewritten as zip64 writes an archive of
/// more than 65,535 entries: a zip64 end record and its locator hold the
/// counts, the classic end record says 0xFFFF.
fn as_zip64(bytes: &[u8]) -> Vec<u8> {
    let eocd = bytes.len() - 22;
    assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
    let field = |at: usize, len: usize| {
        let mut value = [0u8; 8];
        value[..len].copy_from_slice(&bytes[eocd + at..eocd + at + len]);
        u64::from_le_bytes(value)
    };
    let (entries, cd_size, cd_offset) = (field(10, 2), field(12, 4), field(16, 4));
    let mut out = bytes[..eocd].to_vec();
    out.extend_from_slice(b"PK\x06\x06");
    out.extend_from_slice(&44u64.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes());
    out.extend_from_slice(&45u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    for value in [entries, entries, cd_size, cd_offset] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(b"PK\x06\x07");
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(eocd as u64).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&bytes[eocd..eocd + 8]);
    out.extend_from_slice(&[0xFF; 4]);
    out.extend_from_slice(&bytes[eocd + 12..]);
    out
}

/// The count read from the end records agrees with what the zip crate reads
/// from the whole central directory, zip64 archives and trailing comments
/// included, and a zip64 archive is refused on its zip64 count.
#[test]
fn a_zip_declares_its_entry_count_in_its_last_records() {
    use zip::write::SimpleFileOptions;
    let zip64 = as_zip64(&zip_of(60, "appspec.yml"));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", zip_bytes(|_| {})),
        ("three entries", zip_of(3, "appspec.yml")),
        (
            "a comment holding a signature",
            zip_bytes(|w| {
                w.start_file("a", SimpleFileOptions::default()).unwrap();
                w.set_comment("PK\x05\x06 not a record");
            }),
        ),
        ("zip64", zip64.clone()),
    ];
    for (what, bytes) in &cases {
        let declared =
            zip_declared_entries(&mut std::io::Cursor::new(bytes), bytes.len() as u64).unwrap();
        let read = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .unwrap()
            .len();
        assert_eq!(declared, Some(read as u64), "{what}");
    }
    assert_eq!(
        zip_declared_entries(&mut std::io::Cursor::new(b"not a zip"), 9).unwrap(),
        None
    );

    let tmp = tempfile::tempdir().unwrap();
    let bundle = write_bundle(tmp.path(), &zip64);
    let archive = tmp.path().join("deployment-archive");
    let message = unpack_with(
        &bundle,
        BundleType::Zip,
        &archive,
        &capped_at_fifty(),
        &shutdown::never(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        format!("Error extracting zip archive: {FIFTY_ENTRIES_REFUSED}")
    );
    let roomy = BundlePolicy {
        max_entries: 60,
        ..BundlePolicy::default()
    };
    unpack_with(
        &bundle,
        BundleType::Zip,
        &archive,
        &roomy,
        &shutdown::never(),
    )
    .unwrap();
    assert_eq!(fs::read_dir(archive.join("d")).unwrap().count(), 57);
}

/// A pax extended header giving the next entry the path `path`.
pub(in crate::bundle) fn pax_path(path: &str) -> Vec<u8> {
    let body = format!(" path={path}\n");
    let mut length = body.len() + 1;
    while format!("{length}{body}").len() != length {
        length += 1;
    }
    format!("{length}{body}").into_bytes()
}

/// A newline in a name would put a second path in the cleanup file; NUL and
/// ESC would reach terminals and logs. Every way a tar or a zip can carry such
/// a name is refused, with the name escaped, and nothing is left.
#[test]
fn entry_names_with_control_characters_are_refused_escaped() {
    use zip::write::SimpleFileOptions;
    let tmp = tempfile::tempdir().unwrap();
    let hostile = "x\n/etc/shadow";
    let long_name = format!("{}\n/etc/shadow\0", "d/".repeat(60));
    let long_name_header = Entry {
        name: "././@LongLink",
        kind: tar::EntryType::GNULongName,
        mode: 0o644,
        data: long_name.as_bytes(),
        link: "",
    };
    let nul_pax = pax_path("nul\0x");
    let nul_header = Entry {
        name: "PaxHeaders/x",
        kind: tar::EntryType::XHeader,
        mode: 0o644,
        data: &nul_pax,
        link: "",
    };
    let tars: Vec<(Vec<Entry>, &str)> = vec![
        (
            vec![
                file("appspec.yml", 0o644, b"version: 0.0\n"),
                file(hostile, 0o644, b"x"),
            ],
            "entry 'x\\n/etc/shadow': its name holds the control character \\n at byte 1",
        ),
        (
            vec![long_name_header, file("placeholder", 0o644, b"x")],
            "d/d/\\n/etc/shadow': its name holds the control character \\n at byte 120",
        ),
        (
            // A tar header's own name field ends at its first NUL; a pax
            // record's does not.
            vec![nul_header, file("placeholder", 0o644, b"x")],
            "entry 'nul\\0x': its name holds the control character \\0 at byte 3",
        ),
        (
            vec![file("\x1b[2Jclear", 0o644, b"x")],
            "entry '\\u{1b}[2Jclear': its name holds the control character \\u{1b} at byte 0",
        ),
        (
            vec![dir("d\r/", 0o755)],
            "entry 'd\\r/': its name holds the control character \\r",
        ),
        (
            vec![symlink_entry("link", "a\nb")],
            "entry 'link': its link target holds the control character \\n",
        ),
    ];
    for (entries, fragment) in tars {
        let bundle = write_bundle(tmp.path(), &tar_bytes(&entries));
        let archive = tmp.path().join("deployment-archive");
        let message = unpack(&bundle, BundleType::Tar, &archive)
            .expect_err(fragment)
            .to_string();
        assert!(
            message.contains(fragment),
            "expected «{fragment}» in {message}"
        );
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(!archive.exists(), "{message}");
    }
    for name in [hostile, "esc\x1b]0;title\x07"] {
        let bytes = zip_bytes(|w| {
            w.start_file(name, SimpleFileOptions::default()).unwrap();
            w.write_all(b"x").unwrap();
        });
        let bundle = write_bundle(tmp.path(), &bytes);
        let archive = tmp.path().join("deployment-archive");
        let message = unpack(&bundle, BundleType::Zip, &archive)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "Error extracting zip archive: entry '{}': its name holds the control character",
                crate::names::escaped(name)
            )),
            "{message}"
        );
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(!archive.exists(), "{message}");
    }
}

#[test]
fn a_hard_link_to_an_absolute_path_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = write_bundle(
        tmp.path(),
        &tar_bytes(&[hard_link("stolen", "/etc/shadow")]),
    );
    let message = unpack(&bundle, BundleType::Tar, &tmp.path().join("a"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "Error extracting tar archive: entry 'stolen': it is a hard link to the absolute path '/etc/shadow'; a hard link must name a file extracted before it, by its path inside the archive"
    );
}

/// A zip whose content is not the size its central directory declares.
#[test]
fn zip_entries_whose_sizes_lie_are_refused() {
    use zip::write::SimpleFileOptions;
    let tmp = tempfile::tempdir().unwrap();
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let content = [b'a'; 100];
    for (options, method) in [(stored, "stored"), (deflated, "deflated")] {
        let honest = zip_bytes(|w| {
            w.start_file("data.bin", options).unwrap();
            w.write_all(&content).unwrap();
        });
        for (declared, fragment) in [
            (
                40,
                "its content is longer than the 40 bytes its central directory entry declares",
            ),
            (
                400,
                "its content ends after 100 bytes, but its central directory entry declares 400",
            ),
        ] {
            let bundle = write_bundle(tmp.path(), &with_declared_size(honest.clone(), declared));
            let archive = tmp.path().join("deployment-archive");
            let message = unpack(&bundle, BundleType::Zip, &archive)
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with("Error extracting zip archive: entry 'data.bin': ")
                    && message.contains(fragment)
                    && message.contains("the zip's sizes lie"),
                "{method}, declared {declared}: {message}"
            );
            assert!(!archive.exists());
        }
    }
}

/// An end record pointing at a central directory that is not there is
/// reported as that, not as a missing end record.
#[test]
fn a_zip_whose_end_record_disagrees_with_its_directory_says_so() {
    use zip::write::SimpleFileOptions;
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = zip_bytes(|w| {
        w.start_file("appspec.yml", SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"version: 0.0\n").unwrap();
    });
    let end = bytes.len() - 22;
    assert_eq!(&bytes[end..end + 4], b"PK\x05\x06");
    // The directory's offset moved 7 bytes on.
    let offset = u32::from_le_bytes(bytes[end + 16..end + 20].try_into().unwrap()) + 7;
    bytes[end + 16..end + 20].copy_from_slice(&offset.to_le_bytes());
    let bundle = write_bundle(tmp.path(), &bytes);
    let message = unpack(&bundle, BundleType::Zip, &tmp.path().join("a"))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!(
            "Error extracting zip archive: its end-of-central-directory record (at byte {end}) declares 1 entries in a central directory at byte {offset}, which is not what the archive holds there"
        )) && !message.contains("Could not find EOCD ") && message.ends_with("build it again"),
        "{message}"
    );
    let bundle = write_bundle(tmp.path(), b"not a zip at all");
    let message = unpack(&bundle, BundleType::Zip, &tmp.path().join("a"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "Error extracting zip archive: it has no end-of-central-directory record: it is not a zip archive, or it is truncated"
    );
}
