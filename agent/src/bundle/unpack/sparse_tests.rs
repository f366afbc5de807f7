//! Sparse files (`tar --sparse`) in every format GNU tar writes, made here
//! by the real `tar`, and hand-made PAX headers whose numbers lie.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use super::*;
// The crate, not the reader of the same name beside this module.
use ::tar;

/// A 1 GiB file with 6 bytes of data at 5,000,000 and 4 at 900,000,000.
const SIZE: u64 = 1 << 30;
const DATA: [(u64, &[u8]); 2] = [(5_000_000, b"hello\n"), (900_000_000, b"end\n")];

fn make_sparse_file(path: &Path) {
    let mut file = fs::File::create(path).unwrap();
    for (offset, data) in DATA {
        file.seek(SeekFrom::Start(offset)).unwrap();
        std::io::Write::write_all(&mut file, data).unwrap();
    }
    file.set_len(SIZE).unwrap();
}

/// `tar -cSf` of `d/big` with GNU tar's own options for `format`.
fn sparse_tar(dir: &Path, format: &[&str]) -> std::path::PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    make_sparse_file(&tree.join("d/big"));
    let bundle = dir.join("sparse.tar");
    let status = Command::new("tar")
        .args(format)
        .arg("-cSf")
        .arg(&bundle)
        .arg("-C")
        .arg(&tree)
        .arg("d")
        .status()
        .expect("GNU tar runs");
    assert!(status.success());
    fs::remove_dir_all(&tree).unwrap();
    // The whole archive is a few blocks: the holes are not in it.
    assert!(fs::metadata(&bundle).unwrap().len() < 64 * 1024);
    bundle
}

const FORMATS: [(&str, &[&str]); 4] = [
    ("gnu", &["--format=gnu"]),
    ("pax 0.0", &["--format=posix", "--sparse-version=0.0"]),
    ("pax 0.1", &["--format=posix", "--sparse-version=0.1"]),
    ("pax 1.0", &["--format=posix", "--sparse-version=1.0"]),
];

#[test]
fn sparse_files_of_every_tar_format_unpack_whole_with_their_holes_as_holes() {
    for (format, options) in FORMATS {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = sparse_tar(tmp.path(), options);
        let archive = tmp.path().join("deployment-archive");
        unpack(&bundle, BundleType::Tar, &archive).unwrap_or_else(|e| panic!("{format}: {e}"));

        let names: Vec<_> = fs::read_dir(archive.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["big"], "{format}: the file under its own name only");
        let path = archive.join("d/big");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), SIZE, "{format}");
        assert!(
            meta.blocks() * 512 <= 1 << 20,
            "{format}: {} bytes allocated for {SIZE} bytes of which 10 are data",
            meta.blocks() * 512
        );
        let mut file = fs::File::open(&path).unwrap();
        for (offset, data) in DATA {
            let mut read = vec![0; data.len() + 2];
            file.seek(SeekFrom::Start(offset - 1)).unwrap();
            file.read_exact(&mut read).unwrap();
            assert_eq!(&read[1..=data.len()], data, "{format} at {offset}");
            assert_eq!(
                (read[0], read[data.len() + 1]),
                (0, 0),
                "{format} at {offset}"
            );
        }
    }
}

#[test]
fn a_sparse_file_counts_its_full_size_against_archive_max_extraction_size() {
    let policy = BundlePolicy {
        max_extraction_size: 100 << 20,
        ..BundlePolicy::default()
    };
    for (format, options) in FORMATS {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = sparse_tar(tmp.path(), options);
        let archive = tmp.path().join("deployment-archive");
        let message = unpack_with(
            &bundle,
            BundleType::Tar,
            &archive,
            &policy,
            &shutdown::never(),
        )
        .expect_err(format)
        .to_string();
        assert_eq!(
            message,
            "Error extracting tar archive: entry 'd/big': the revision unpacks to more than \
             archive_max_extraction_size (104857600 bytes); raise that key if this revision is genuinely that large",
            "{format}"
        );
        assert!(
            !archive.exists(),
            "{format}: the half-unpacked archive is removed"
        );
    }
}

/// A tar of one PAX extended header holding `records`, then a file `name`
/// carrying `data`.
fn pax_tar(records: &[(&str, &str)], name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        // Each record is "<length> <key>=<value>\n", the length counting itself.
        let rest = format!(" {key}={value}\n");
        let mut length = rest.len() + 1;
        while format!("{length}").len() + rest.len() != length {
            length += 1;
        }
        body.extend_from_slice(format!("{length}{rest}").as_bytes());
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut pax = tar::Header::new_ustar();
    pax.set_path("PaxHeaders/f").unwrap();
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_size(body.len() as u64);
    pax.set_cksum();
    builder.append(&pax, &body[..]).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path(name).unwrap();
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

fn map_block(map: &str, data: &[u8]) -> Vec<u8> {
    let mut content = map.as_bytes().to_vec();
    content.resize(content.len().div_ceil(512) * 512, 0);
    content.extend_from_slice(data);
    content
}

#[test]
fn sparse_headers_whose_numbers_lie_are_refused_with_the_entry_named() {
    let v1 = |size: &'static str| {
        vec![
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "app/data.bin"),
            ("GNU.sparse.realsize", size),
        ]
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a chunk past the end",
            pax_tar(&v1("100"), "app/GNUSparseFile.1/data.bin", &map_block("1\n98\n4\n", b"abcd")),
            "entry 'app/data.bin': its sparse chunk at offset 98 (4 bytes) ends past the file's size of 100 bytes",
        ),
        (
            "overlapping chunks",
            pax_tar(&v1("100"), "app/GNUSparseFile.1/data.bin", &map_block("2\n10\n4\n12\n4\n", b"abcdefgh")),
            "entry 'app/data.bin': its sparse chunk at offset 12 (4 bytes) overlaps the one before it",
        ),
        (
            "more data listed than carried",
            pax_tar(&v1("100"), "app/GNUSparseFile.1/data.bin", &map_block("1\n0\n40\n", b"abcd")),
            "entry 'app/data.bin': its sparse chunks hold 40 bytes of data but the entry carries 4",
        ),
        (
            "a map of a billion chunks",
            pax_tar(&v1("100"), "app/GNUSparseFile.1/data.bin", &map_block("1000000000\n", b"")),
            "entry 'app/data.bin': its sparse map lists more than 100000 chunks",
        ),
        (
            "a map larger than the entry",
            pax_tar(&v1("100"), "app/GNUSparseFile.1/data.bin", b"1\n0\n4\n"),
            "entry 'app/data.bin': its sparse map is malformed: the entry ends inside its map",
        ),
        (
            "an unknown version",
            pax_tar(
                &[("GNU.sparse.major", "3"), ("GNU.sparse.minor", "1"), ("GNU.sparse.realsize", "1")],
                "x",
                b"",
            ),
            "entry 'x': its sparse header has GNU.sparse.major=3, GNU.sparse.minor=1, a version this agent does not read",
        ),
        (
            "a size of 2^64",
            pax_tar(&[("GNU.sparse.size", "18446744073709551616")], "x", b""),
            "entry 'x': its sparse header record GNU.sparse.size is not a number",
        ),
        (
            // GNU.sparse.name is as hostile as any other path.
            "a real name that climbs out",
            pax_tar(
                &[
                    ("GNU.sparse.major", "1"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.name", "../../etc/cron.d/x"),
                    ("GNU.sparse.realsize", "10"),
                ],
                "GNUSparseFile.1/x",
                &map_block("0\n", b""),
            ),
            "entry '../../etc/cron.d/x': its path contains '..'",
        ),
    ];
    for (what, bytes, fragment) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle.tar");
        fs::write(&bundle, bytes).unwrap();
        let archive = tmp.path().join("deployment-archive");
        let message = unpack(&bundle, BundleType::Tar, &archive)
            .expect_err(what)
            .to_string();
        assert!(
            message.contains(fragment),
            "{what}: expected «{fragment}» in {message}"
        );
        assert!(!archive.exists(), "{what}: nothing is left");
    }
}
