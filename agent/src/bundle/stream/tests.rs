//! The streaming DownloadBundle against the download-then-unpack path it
//! replaces: real archives, fed to `receive` as bodies in small chunks
//! (including bodies that break off), unpacked into temporary directories and
//! compared file by file with what `unpack_with` makes of the same bytes.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::bundle::error::BrokenOff;
use crate::bundle::s3::with_retries;
use crate::bundle::unpack::tests::{dir, file, hard_link, symlink_entry, tar_bytes};
use crate::bundle::S3Object;
use crate::shutdown;
use bytes::Bytes;
use futures_util::future::BoxFuture;

/// A body served from memory in chunks of `chunk` bytes, optionally breaking
/// off after `break_at` bytes.
struct MemoryBody {
    pieces: VecDeque<Result<Placed, BrokenOff>>,
}

impl MemoryBody {
    fn new(bytes: &[u8], chunk: usize, break_at: Option<usize>) -> MemoryBody {
        let sent = break_at.unwrap_or(bytes.len()).min(bytes.len());
        let mut order = InOrder::default();
        let mut pieces: VecDeque<_> = bytes[..sent]
            .chunks(chunk)
            .map(|c| Ok(order.place(Bytes::copy_from_slice(c))))
            .collect();
        if break_at.is_some() {
            pieces.push_back(Err(BrokenOff::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ))));
        }
        MemoryBody { pieces }
    }

    /// The bytes as a ranged download hands them over: parts of `part`
    /// bytes, `connections` of them at once, their chunks of `chunk` bytes
    /// taken in turn, a finished part's place taken by the next one.
    fn side_by_side(bytes: &[u8], part: usize, connections: usize, chunk: usize) -> MemoryBody {
        let mut waiting: VecDeque<VecDeque<Placed>> = bytes
            .chunks(part)
            .enumerate()
            .map(|(i, part_bytes)| {
                part_bytes
                    .chunks(chunk)
                    .enumerate()
                    .map(|(j, c)| Placed {
                        at: (i * part + j * chunk) as u64,
                        bytes: Bytes::copy_from_slice(c),
                    })
                    .collect()
            })
            .collect();
        let mut running: Vec<VecDeque<Placed>> = Vec::new();
        let mut pieces = VecDeque::new();
        loop {
            while running.len() < connections {
                match waiting.pop_front() {
                    Some(next) => running.push(next),
                    None => break,
                }
            }
            if running.is_empty() {
                break;
            }
            // The last part started comes first: the first part is never
            // ahead of the others.
            for part in running.iter_mut().rev() {
                if let Some(placed) = part.pop_front() {
                    pieces.push_back(Ok(placed));
                }
            }
            running.retain(|part| !part.is_empty());
        }
        MemoryBody { pieces }
    }
}

impl Body for MemoryBody {
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Placed>, Fetch>> {
        let next = self.pieces.pop_front().transpose();
        Box::pin(async move { next.map_err(Fetch::BrokenOff) })
    }
}

fn destination(root: &Path, policy: BundlePolicy) -> Destination {
    Destination {
        bundle_file: root.join("bundle.tar"),
        archive_dir: root.join("deployment-archive"),
        policy,
        stop: shutdown::never(),
    }
}

/// What a user could tell apart in an unpacked tree: per path, the kind,
/// content or link target, mode, owner, group, modification time, and which
/// files are hard links of one another.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut paths = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                pending.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths.sort();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut found = BTreeMap::new();
    for path in paths {
        let relative = path.strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(&path).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_string()
        } else {
            let first = inodes.entry(meta.ino()).or_insert(relative.clone());
            let content = fs::read(&path).unwrap();
            let mut hasher = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&content, &mut hasher);
            format!(
                "file of {} bytes, hash {:x} (inode of {first})",
                content.len(),
                std::hash::Hasher::finish(&hasher)
            )
        };
        found.insert(
            relative,
            format!(
                "{what} mode {:o} owner {}:{} mtime {}",
                meta.permissions().mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.mtime()
            ),
        );
    }
    found
}

/// A revision with what a tar keeps: nested and read-only directories,
/// setuid and private modes, owners (restored when the tests run as root),
/// links inside the archive, a hard link, and a file bigger than any chunk.
fn revision_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, owner: u64, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner);
        header.set_gid(owner + 1);
        header.set_mtime(1_600_000_000 + owner);
        header.set_size(data.len() as u64);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => builder
                .append_link(&mut header, path, std::str::from_utf8(data).unwrap())
                .unwrap(),
            _ => builder.append_data(&mut header, path, data).unwrap(),
        }
    };
    // Several of the read-ahead's 256 KiB blocks, so that entries cross
    // block boundaries.
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
    add(
        "appspec.yml",
        tar::EntryType::Regular,
        0o644,
        0,
        b"version: 0.0\nos: linux\n",
    );
    add("scripts", tar::EntryType::Directory, 0o750, 1001, b"");
    add(
        "scripts/start.sh",
        tar::EntryType::Regular,
        0o4755,
        1001,
        b"#!/bin/sh\n",
    );
    add("data", tar::EntryType::Directory, 0o755, 1002, b"");
    add("data/deep", tar::EntryType::Directory, 0o711, 1002, b"");
    add("data/deep/er", tar::EntryType::Directory, 0o700, 1002, b"");
    add(
        "data/deep/er/big.bin",
        tar::EntryType::Regular,
        0o600,
        1003,
        &big,
    );
    add("data/empty", tar::EntryType::Regular, 0o640, 1004, b"");
    add("readonly", tar::EntryType::Directory, 0o555, 1005, b"");
    add("readonly/keep", tar::EntryType::Regular, 0o444, 1005, b"x");
    add(
        "current",
        tar::EntryType::Symlink,
        0o777,
        1006,
        b"scripts/start.sh",
    );
    add(
        "data/up",
        tar::EntryType::Symlink,
        0o777,
        1006,
        b"../readonly",
    );
    add(
        "data/same.bin",
        tar::EntryType::Link,
        0o600,
        1003,
        b"data/deep/er/big.bin",
    );
    let mut bytes = builder.into_inner().unwrap();
    // As GNU tar does: padding to a whole record, after the end-of-archive
    // blocks, which the tar reader never needs to read.
    bytes.resize(bytes.len().div_ceil(10240) * 10240 + 10240, 0);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn zip_of_revision() -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().unix_permissions(0o750);
    writer.start_file("appspec.yml", options).unwrap();
    writer.write_all(b"version: 0.0\n").unwrap();
    writer.add_directory("web/", options).unwrap();
    writer.start_file("web/index.html", options).unwrap();
    writer.write_all(b"<p>hi</p>").unwrap();
    writer.finish().unwrap().into_inner()
}

/// Names in `dir` left by a download in progress.
fn partial_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(PARTIAL_PREFIX))
        .collect()
}

/// The download-then-unpack result of `bytes` as `declared`: the tree, or
/// the error message.
fn unpacked_from_file(
    bytes: &[u8],
    declared: BundleType,
) -> Result<BTreeMap<String, String>, String> {
    let tmp = tempfile::tempdir().unwrap();
    let to = destination(tmp.path(), BundlePolicy::default());
    fs::write(&to.bundle_file, bytes).unwrap();
    unpack_with(
        &to.bundle_file,
        declared,
        &to.archive_dir,
        &to.policy,
        &to.stop,
    )
    .map(|()| snapshot(&to.archive_dir))
    .map_err(|e| e.to_string())
}

#[test]
fn only_the_declared_tar_or_tgz_is_streamed() {
    let tar = tar_bytes(&[file("a", 0o644, b"x")]);
    let tgz = gzip(&tar);
    let zip = zip_of_revision();
    let cases: &[(BundleType, &[u8], Option<TarCompression>)] = &[
        (BundleType::Tgz, &tgz, Some(TarCompression::Gzip)),
        (BundleType::Tar, &tar, Some(TarCompression::None)),
        // Not what was declared: the first bytes send it the old way.
        (BundleType::Tgz, &tar, None),
        (BundleType::Tgz, &zip, None),
        (BundleType::Tar, &tgz, None),
        (BundleType::Tar, b"not an archive at all", None),
        (BundleType::Zip, &zip, None),
        (BundleType::Zip, &tgz, None),
        (BundleType::Tgz, b"", None),
    ];
    for (declared, bytes, expected) in cases {
        let head = &bytes[..bytes.len().min(HEAD_LEN)];
        assert_eq!(streaming_for(*declared, head), *expected, "{declared:?}");
    }
}

/// The streamed bundle and the downloaded-then-unpacked one are the same
/// tree (content, modes, owners, times, links), whatever the chunking, and
/// `bundle.tar` holds the whole body either way.
#[tokio::test(flavor = "current_thread")]
async fn a_streamed_bundle_unpacks_to_the_same_tree_as_a_downloaded_one() {
    let tar = revision_tar();
    let tgz = gzip(&tar);
    let cases: &[(&str, BundleType, &[u8], usize)] = &[
        ("tgz in 1 KiB chunks", BundleType::Tgz, &tgz, 1024),
        ("tgz in 7-byte chunks", BundleType::Tgz, &tgz, 7),
        ("tgz in one chunk", BundleType::Tgz, &tgz, usize::MAX),
        ("tar in 64 KiB chunks", BundleType::Tar, &tar, 65536),
        ("tar in 100-byte chunks", BundleType::Tar, &tar, 100),
        (
            "zip (downloaded first)",
            BundleType::Zip,
            &zip_of_revision(),
            333,
        ),
    ];
    for (name, declared, bytes, chunk) in cases {
        let expected = unpacked_from_file(bytes, *declared).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let to = destination(tmp.path(), BundlePolicy::default());
        receive(&mut MemoryBody::new(bytes, *chunk, None), *declared, &to)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(snapshot(&to.archive_dir), expected, "{name}");
        assert_eq!(fs::read(&to.bundle_file).unwrap(), *bytes, "{name}");
        assert_eq!(partial_files(tmp.path()), Vec::<String>::new(), "{name}");
    }
    let tree = unpacked_from_file(&tgz, BundleType::Tgz).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        assert!(
            tree["scripts/start.sh"].contains("mode 4755 owner 1001:1002"),
            "owners and setuid kept as root: {tree:?}"
        );
    }
    assert!(
        tree["data/same.bin"].contains("inode of data/deep/er/big.bin"),
        "{tree:?}"
    );
}

/// A ranged download's parts arrive side by side, out of the object's order:
/// each chunk goes to its place in `bundle.tar`, and the tree is the one the
/// same bytes in order make.
#[tokio::test(flavor = "current_thread")]
async fn a_bundle_whose_parts_arrive_side_by_side_unpacks_as_in_order() {
    let tar = revision_tar();
    let tgz = gzip(&tar);
    let zip = zip_of_revision();
    // (name, type, bytes, part, connections, chunk)
    type Case<'a> = (&'a str, BundleType, &'a [u8], usize, usize, usize);
    let cases: &[Case] = &[
        (
            "tgz, parts of 1 KiB over 3",
            BundleType::Tgz,
            &tgz,
            1024,
            3,
            100,
        ),
        (
            "tgz, parts of 777 B over 8",
            BundleType::Tgz,
            &tgz,
            777,
            8,
            64,
        ),
        (
            "tar, parts of 4 KiB over 2",
            BundleType::Tar,
            &tar,
            4096,
            2,
            1000,
        ),
        (
            "tar, parts of 512 B over 16",
            BundleType::Tar,
            &tar,
            512,
            16,
            512,
        ),
        (
            "zip, parts of 300 B over 4",
            BundleType::Zip,
            &zip,
            300,
            4,
            100,
        ),
    ];
    for (name, declared, bytes, part, connections, chunk) in cases {
        let body = MemoryBody::side_by_side(bytes, *part, *connections, *chunk);
        let first_at = body
            .pieces
            .front()
            .and_then(|p| p.as_ref().ok())
            .map(|p| p.at);
        assert_ne!(
            first_at,
            Some(0),
            "{name}: the first chunk is not the first part's"
        );
        let expected = unpacked_from_file(bytes, *declared).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let to = destination(tmp.path(), BundlePolicy::default());
        let mut body = body;
        receive(&mut body, *declared, &to)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(snapshot(&to.archive_dir), expected, "{name}");
        assert_eq!(fs::read(&to.bundle_file).unwrap(), *bytes, "{name}");
        assert_eq!(partial_files(tmp.path()), Vec::<String>::new(), "{name}");
    }
}

/// A body that ends with a hole (a part never handed over) is no bundle: the
/// download fails naming the missing bytes, and nothing is left.
#[tokio::test(flavor = "current_thread")]
async fn a_body_that_ends_with_bytes_missing_fails_and_leaves_nothing() {
    let tgz = gzip(&revision_tar());
    let mut body = MemoryBody::side_by_side(&tgz, 1024, 4, 256);
    // The chunk of bytes 1024-1279 never comes.
    body.pieces
        .retain(|p| p.as_ref().map_or(true, |placed| placed.at != 1024));
    let tmp = tempfile::tempdir().unwrap();
    let to = destination(tmp.path(), BundlePolicy::default());
    let error = match receive(&mut body, BundleType::Tgz, &to).await {
        Err(Fetch::Final(error)) => error.to_string(),
        other => panic!("not a failure: {other:?}"),
    };
    assert!(error.contains("ended without bytes 1024-1279"), "{error}");
    assert!(!to.bundle_file.exists());
    assert_eq!(partial_files(tmp.path()), Vec::<String>::new());
}

#[test]
fn bytes_written_are_tracked_as_a_prefix_and_runs_beyond_it() {
    // Chunks (at, len) added in turn; the prefix and the runs after each.
    type Step = ((u64, u64), u64, &'static [(u64, u64)]);
    let steps: &[Step] = &[
        ((10, 5), 0, &[(10, 15)]),
        ((15, 5), 0, &[(10, 20)]),
        ((30, 10), 0, &[(10, 20), (30, 40)]),
        ((0, 4), 4, &[(10, 20), (30, 40)]),
        ((4, 6), 20, &[(30, 40)]),
        ((25, 5), 20, &[(25, 40)]),
        ((20, 5), 40, &[]),
        ((40, 0), 40, &[]),
    ];
    let mut written = Written::default();
    for ((at, len), prefix, runs) in steps {
        written.add(*at, *len).unwrap();
        assert_eq!(written.prefix, *prefix, "after {at}+{len}");
        let got: Vec<(u64, u64)> = written.runs.iter().map(|(s, e)| (*s, *e)).collect();
        assert_eq!(got, *runs, "after {at}+{len}");
    }
    assert_eq!(written.first_gap(), None);
    // Overlaps: with the prefix, a run's start, middle or end, an overflow.
    let mut written = Written::default();
    written.add(0, 10).unwrap();
    written.add(20, 10).unwrap();
    for (at, len) in [(5, 1), (19, 2), (25, 1), (29, 5), (15, 100), (u64::MAX, 2)] {
        let before = written.clone();
        assert!(written.add(at, len).is_err(), "{at}+{len} overlaps");
        assert_eq!(written, before, "a refused chunk changes nothing");
    }
    assert_eq!(written.first_gap(), Some(10..20));
}

/// When the bytes are not the declared type, streaming steps aside and the
/// outcome is exactly the download-then-unpack one, error message included.
#[tokio::test(flavor = "current_thread")]
async fn bytes_that_are_not_the_declared_type_fail_or_succeed_as_before() {
    let tar = revision_tar();
    let cases: &[(BundleType, &[u8])] = &[
        (BundleType::Tgz, &tar),
        (BundleType::Tgz, &zip_of_revision()),
        (BundleType::Tar, &gzip(&tar)),
        (BundleType::Tar, b"garbage that is no archive"),
    ];
    for (declared, bytes) in cases {
        let expected = unpacked_from_file(bytes, *declared);
        let tmp = tempfile::tempdir().unwrap();
        let to = destination(tmp.path(), BundlePolicy::default());
        let streamed = match receive(&mut MemoryBody::new(bytes, 500, None), *declared, &to).await {
            Ok(()) => Ok(snapshot(&to.archive_dir)),
            Err(Fetch::Final(e)) => Err(e.to_string()),
            Err(Fetch::BrokenOff(cause)) => panic!("{declared:?}: broke off: {cause}"),
        };
        assert_eq!(streamed, expected, "{declared:?}");
        assert!(expected.is_err(), "{declared:?}: a mismatched type fails");
        assert_eq!(fs::read(&to.bundle_file).unwrap(), *bytes);
    }
}

/// A body that breaks off (inside an entry, inside the gzip stream, or in the
/// padding after the archive's end) leaves no archive directory and no
/// bundle file, and says it broke off so that the caller fetches again.
#[tokio::test(flavor = "current_thread")]
async fn a_body_that_breaks_off_leaves_nothing_behind() {
    let tar = revision_tar();
    let tgz = gzip(&tar);
    let cases: &[(&str, BundleType, &[u8], usize)] = &[
        ("tgz, first bytes", BundleType::Tgz, &tgz, 10),
        ("tgz, midway", BundleType::Tgz, &tgz, tgz.len() / 2),
        (
            "tgz, last byte missing",
            BundleType::Tgz,
            &tgz,
            tgz.len() - 1,
        ),
        ("tar, inside the big file", BundleType::Tar, &tar, 100_000),
        (
            "tar, in the padding",
            BundleType::Tar,
            &tar,
            tar.len() - 100,
        ),
        ("zip, midway", BundleType::Zip, &zip_of_revision(), 200),
    ];
    for (name, declared, bytes, break_at) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let to = destination(tmp.path(), BundlePolicy::default());
        let result = receive(
            &mut MemoryBody::new(bytes, 4096, Some(*break_at)),
            *declared,
            &to,
        )
        .await;
        match result {
            Err(Fetch::BrokenOff(cause)) => {
                assert!(cause.to_string().contains("reset"), "{name}: {cause}")
            }
            other => panic!("{name}: expected a broken-off body, got {other:?}"),
        }
        let left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{name}: nothing left behind");
    }
}

/// The retry of a broken-off body unpacks again from an empty archive
/// directory: the result is the tree of a clean download.
#[tokio::test(flavor = "current_thread")]
async fn a_broken_off_download_is_fetched_again_into_a_clean_tree() {
    let tgz = gzip(&revision_tar());
    let expected = unpacked_from_file(&tgz, BundleType::Tgz).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let to = destination(tmp.path(), BundlePolicy::default());
    // Something an earlier attempt could have left.
    fs::create_dir_all(to.archive_dir.join("scripts")).unwrap();
    fs::write(to.archive_dir.join("scripts/stale.sh"), b"old").unwrap();
    let attempts = AtomicU32::new(0);
    let object = S3Object {
        bucket: "bundles".into(),
        key: "app.tgz".into(),
        version: None,
    };
    with_retries(object, || {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst);
        let mut body = MemoryBody::new(&tgz, 2048, (attempt == 0).then_some(tgz.len() / 3));
        let to = to.clone();
        async move { receive(&mut body, BundleType::Tgz, &to).await }
    })
    .await
    .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(snapshot(&to.archive_dir), expected);
    assert_eq!(fs::read(&to.bundle_file).unwrap(), tgz);
    assert_eq!(partial_files(tmp.path()), Vec::<String>::new());
}

/// A body that keeps breaking off fails after the bounded attempts, saying
/// so and naming the object, with nothing unpacked.
#[tokio::test(flavor = "current_thread")]
async fn a_body_that_keeps_breaking_off_fails_after_three_attempts() {
    let tgz = gzip(&revision_tar());
    let tmp = tempfile::tempdir().unwrap();
    let to = destination(tmp.path(), BundlePolicy::default());
    let attempts = AtomicU32::new(0);
    let object = S3Object {
        bucket: "bundles".into(),
        key: "app.tgz".into(),
        version: None,
    };
    let err = with_retries(object, || {
        attempts.fetch_add(1, Ordering::SeqCst);
        let mut body = MemoryBody::new(&tgz, 2048, Some(tgz.len() / 2));
        let to = to.clone();
        async move { receive(&mut body, BundleType::Tgz, &to).await }
    })
    .await
    .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    let message = err.to_string();
    assert!(
        message.contains("s3://bundles/app.tgz") && message.contains("the download broke off"),
        "{message}"
    );
    assert!(!to.archive_dir.exists() && !to.bundle_file.exists());
    assert_eq!(partial_files(tmp.path()), Vec::<String>::new());
}

/// The unpacker's refusals fire on a streamed bundle with the very message
/// of a downloaded one, and nothing is written outside the archive.
#[tokio::test(flavor = "current_thread")]
async fn hostile_entries_are_refused_with_the_same_message_when_streamed() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let outside_str = outside.to_str().unwrap().to_string();
    let strict = BundlePolicy {
        max_extraction_size: 10,
        ..BundlePolicy::default()
    };
    let cases = vec![
        (
            tar_bytes(&[file("ok", 0o644, b"x"), file("../x", 0o644, b"evil")]),
            BundlePolicy::default(),
            "entry '../x': its path contains '..'",
        ),
        (
            tar_bytes(&[symlink_entry("link", &outside_str)]),
            BundlePolicy::default(),
            "entry 'link': it is a symbolic link to",
        ),
        (
            tar_bytes(&[symlink_entry("up", "../../etc")]),
            BundlePolicy::default(),
            "which leads outside the archive",
        ),
        (
            tar_bytes(&[
                dir("inside/", 0o755),
                symlink_entry("link", "inside"),
                file("link/victim", 0o644, b"evil"),
            ]),
            BundlePolicy::default(),
            "it would be written through the symbolic link 'link'",
        ),
        (
            tar_bytes(&[hard_link("stolen", "../outside/victim")]),
            BundlePolicy::default(),
            "climbs out of the archive with '..'",
        ),
        (
            tar_bytes(&[file("big", 0o644, b"more than ten bytes")]),
            strict,
            "more than archive_max_extraction_size",
        ),
    ];
    for (tar, policy, fragment) in cases {
        for (declared, bytes) in [
            (BundleType::Tar, tar.clone()),
            (BundleType::Tgz, gzip(&tar)),
        ] {
            let run = tmp.path().join("run");
            let _ = fs::remove_dir_all(&run);
            fs::create_dir(&run).unwrap();
            let to = destination(&run, policy);
            fs::write(&to.bundle_file, &bytes).unwrap();
            let downloaded = unpack_with(
                &to.bundle_file,
                declared,
                &to.archive_dir,
                &policy,
                &to.stop,
            )
            .unwrap_err()
            .to_string();
            fs::remove_file(&to.bundle_file).unwrap();
            let streamed =
                match receive(&mut MemoryBody::new(&bytes, 300, None), declared, &to).await {
                    Err(Fetch::Final(e)) => e.to_string(),
                    other => panic!("{fragment}: expected a refusal, got {other:?}"),
                };
            assert_eq!(streamed, downloaded, "{declared:?}");
            assert!(
                streamed.starts_with("Error extracting tar archive: ")
                    && streamed.contains(fragment),
                "expected «{fragment}» in {streamed}"
            );
            assert!(
                !to.archive_dir.exists(),
                "{fragment}: the half archive is removed"
            );
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{fragment}");
            assert!(!tmp.path().join("x").exists() && !run.join("x").exists());
        }
    }
}
