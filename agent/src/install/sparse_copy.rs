//! Copying a revision file that has holes (a sparse file from the bundle)
//! so that the copy has the same holes: the kernel's copy writes holes out
//! as zeros, which turns a 1 GiB file of 4 KiB of data into 1 GiB on disk.
//! Only the data stretches the file system reports (`SEEK_DATA`/`SEEK_HOLE`)
//! are copied; a file system that cannot tell reports the whole file as data,
//! which is then copied whole, as before.

use std::fs;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// Whether `meta` describes a file with holes: fewer bytes allocated than
/// its size. (A file whose last block is partly used is not counted as one:
/// allocation is in whole 512-byte units, never below the size of the data.)
pub fn has_holes(meta: &fs::Metadata) -> bool {
    meta.is_file() && meta.blocks().saturating_mul(512) < meta.len()
}

/// Copies `input` (of `len` bytes) into the empty `output`, data stretches
/// only, and gives `output` the full length.
pub fn copy_with_holes(input: &mut fs::File, output: &mut fs::File, len: u64) -> io::Result<()> {
    let mut at: u64 = 0;
    while at < len {
        let Some(start) = seek(input, at, Whence::SeekData)? else {
            break;
        };
        let end = seek(input, start, Whence::SeekHole)?
            .unwrap_or(len)
            .min(len);
        input.seek(SeekFrom::Start(start))?;
        output.seek(SeekFrom::Start(start))?;
        // A Take of a File to a File: std still copies with copy_file_range.
        io::copy(&mut io::Read::take(&mut *input, end - start), output)?;
        at = end;
    }
    output.set_len(len)
}

/// `lseek(2)` from `offset`; `None` when there is no more data (ENXIO).
fn seek(file: &fs::File, offset: u64, whence: Whence) -> io::Result<Option<u64>> {
    let offset = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    match lseek(file.as_raw_fd(), offset, whence) {
        Ok(at) => Ok(u64::try_from(at).ok()),
        Err(Errno::ENXIO) => Ok(None),
        Err(errno) => Err(io::Error::from(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_sparse_file_is_copied_with_its_holes_and_its_data() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let source = dir.path().join("source");
        let mut file = fs::File::create(&source).expect("a file");
        file.seek(SeekFrom::Start(1 << 20)).expect("seek");
        file.write_all(b"first").expect("write");
        file.seek(SeekFrom::Start(200 << 20)).expect("seek");
        file.write_all(b"second").expect("write");
        file.set_len(256 << 20).expect("a hole at the end");
        drop(file);
        let meta = fs::metadata(&source).expect("metadata");
        assert!(has_holes(&meta));

        let copy = dir.path().join("copy");
        let mut output = fs::File::create(&copy).expect("the copy");
        copy_with_holes(
            &mut fs::File::open(&source).expect("open"),
            &mut output,
            meta.len(),
        )
        .expect("copied");
        let copied = fs::metadata(&copy).expect("metadata");
        assert_eq!(copied.len(), 256 << 20);
        assert!(
            copied.blocks() * 512 <= 256 * 1024,
            "{} blocks",
            copied.blocks()
        );
        assert!(fs::read(&copy).expect("read") == fs::read(&source).expect("read"));
    }

    #[test]
    fn a_file_without_holes_is_not_taken_for_one() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for size in [0, 1, 511, 4097, 1 << 20] {
            let path = dir.path().join(format!("f{size}"));
            fs::write(&path, vec![7u8; size]).expect("written");
            assert!(
                !has_holes(&fs::metadata(&path).expect("metadata")),
                "{size}"
            );
        }
    }
}
