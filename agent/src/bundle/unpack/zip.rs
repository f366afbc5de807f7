//! Reading zip bundles: the end-of-central-directory record read here first
//! (so that a declared entry count over the cap is refused before the zip
//! crate loads the directory), the zip-bomb checks on the directory, then
//! each entry described (kind from its Unix mode, link target, mode, time)
//! and handed to the target. Never writes to disk, and never trusts the
//! sizes the archive declares: content longer or shorter than declared is
//! refused as it is read.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::target::Target;
use super::{entry_io, unsafe_entry, Attributes, EntryKind, ExtractError};
use crate::names;

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Deflate cannot shrink data more than about 1032:1; an entry claiming more
/// has a header that lies, which is how zip bombs get past size checks.
const MAX_ZIP_RATIO: u64 = 1100;

/// Each entry of the zip in `file`, described and handed to `target`, once
/// its central directory has passed the entry-count and zip-bomb checks.
pub(super) fn extract(file: fs::File, target: &mut Target) -> Result<(), ExtractError> {
    let archive_length = file.metadata()?.len();
    let mut reader = io::BufReader::new(file);
    // The zip crate loads the whole central directory, a few hundred bytes
    // per entry: the declared count is checked before it does.
    let end_record = zip_end_record(&mut reader, archive_length)?;
    if let Some(end) = &end_record {
        target.check_entry_count(end.entries)?;
    }
    let mut archive =
        zip::ZipArchive::new(reader).map_err(|e| zip_directory_error(e, end_record))?;
    // Again on what the crate read: it may have settled on another record.
    target.check_entry_count(archive.len() as u64)?;
    check_zip_bomb(&mut archive, archive_length)?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let raw_name = entry.name().to_string();
        let name = names::escaped(&raw_name);
        let unix_mode = entry.unix_mode();
        let is_dir = entry.is_dir();
        let mtime = entry.last_modified().and_then(zip_time);
        let declared = entry.size();
        let mut content = DeclaredSize {
            inner: &mut entry,
            declared,
            read: 0,
        };
        let file_type = unix_mode.map(|m| m & S_IFMT).filter(|t| *t != 0);
        let kind = match file_type {
            _ if is_dir => EntryKind::Directory,
            Some(S_IFDIR) => EntryKind::Directory,
            Some(S_IFLNK) => {
                let mut link = String::new();
                content
                    .read_to_string(&mut link)
                    .map_err(|e| entry_io(&name, e))?;
                EntryKind::Symlink(PathBuf::from(link))
            }
            None | Some(S_IFREG) => EntryKind::File,
            Some(_) => {
                return Err(unsafe_entry(
                    &name,
                    "device nodes and fifos are not allowed in a revision",
                ))
            }
        };
        // As unzip without -K: no setuid/setgid/sticky; umask-like defaults when
        // the archive carries no Unix mode.
        let default_mode = if matches!(kind, EntryKind::Directory) {
            0o755
        } else {
            0o644
        };
        let attributes = Attributes {
            mode: unix_mode.map(|m| m & 0o777).unwrap_or(default_mode),
            owner: None,
            mtime,
        };
        target.extract(&name, Path::new(&raw_name), kind, attributes, &mut content)?;
    }
    target.finish()
}

/// A zip entry's content, refused the moment it is longer than the size its
/// central directory declares, and at its end if it is shorter: the
/// extraction budget and the zip-bomb check trust that size.
struct DeclaredSize<R> {
    inner: R,
    declared: u64,
    read: u64,
}

impl<R: Read> Read for DeclaredSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte past the declared size is enough to know it lies.
        let room = self.declared.saturating_sub(self.read).saturating_add(1);
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        let lie = |detail: String| {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{detail}: the zip's sizes lie (a damaged or crafted archive); build it again"
                ),
            ))
        };
        if self.read > self.declared {
            return lie(format!(
                "its content is longer than the {} bytes its central directory entry declares",
                self.declared
            ));
        }
        if n == 0 && self.read < self.declared {
            return lie(format!(
                "its content ends after {} bytes, but its central directory entry declares {}",
                self.read, self.declared
            ));
        }
        Ok(n)
    }
}

/// What the zip crate's refusal of a central directory means for the
/// operator: the crate says "Could not find EOCD" even when the record is
/// there and only the directory it points to is not.
fn zip_directory_error(error: zip::result::ZipError, end: Option<ZipEndRecord>) -> ExtractError {
    let zip::result::ZipError::InvalidArchive(detail) = &error else {
        return ExtractError::Zip(error);
    };
    let message = match end {
        None => "it has no end-of-central-directory record: it is not a zip archive, or it is truncated".to_string(),
        Some(end) => format!(
            "its end-of-central-directory record (at byte {}) declares {} entries in a central directory at byte {}, which is not what the archive holds there ({detail}): the archive is damaged or was altered after it was made; build it again",
            end.at, end.entries, end.directory_offset
        ),
    };
    ExtractError::Io(io::Error::new(io::ErrorKind::InvalidData, message))
}

/// The end-of-central-directory record: signature, 18 bytes of fields, and a
/// comment of up to 64 KiB.
const ZIP_EOCD_SIGNATURE: &[u8; 4] = b"PK\x05\x06";
const ZIP_EOCD_LENGTH: u64 = 22;
const ZIP64_LOCATOR_SIGNATURE: &[u8; 4] = b"PK\x06\x07";
const ZIP64_LOCATOR_LENGTH: u64 = 20;
const ZIP64_EOCD_SIGNATURE: &[u8; 4] = b"PK\x06\x06";

/// A zip's last end-of-central-directory record, as readers find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ZipEndRecord {
    /// Where the record starts.
    at: u64,
    /// The entry count it declares (the zip64 record's, when it points to one).
    entries: u64,
    /// Where it says the central directory starts (the classic record's field).
    directory_offset: u64,
}

/// The entry count a zip declares (see [`zip_end_record`]).
#[cfg(test)]
pub(super) fn zip_declared_entries<R: Read + Seek>(
    reader: &mut R,
    length: u64,
) -> io::Result<Option<u64>> {
    Ok(zip_end_record(reader, length)?.map(|end| end.entries))
}

/// The last end-of-central-directory record (and the zip64 one it points
/// to) as readers find it, without reading the central directory. `None`
/// when there is no such record.
fn zip_end_record<R: Read + Seek>(reader: &mut R, length: u64) -> io::Result<Option<ZipEndRecord>> {
    let tail_length = length.min(ZIP_EOCD_LENGTH + u64::from(u16::MAX));
    let mut tail = vec![0; tail_length as usize];
    reader.seek(SeekFrom::Start(length - tail_length))?;
    reader.read_exact(&mut tail)?;
    let u16_at = |bytes: &[u8], at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u32_at = |bytes: &[u8], at: usize| {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
    };
    let u64_at = |bytes: &[u8], at: usize| {
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
    };
    // The last signature whose comment ends within the file.
    let eocd = (0..tail.len().saturating_sub(ZIP_EOCD_LENGTH as usize - 1))
        .rev()
        .find(|&at| {
            &tail[at..at + 4] == ZIP_EOCD_SIGNATURE
                && at + ZIP_EOCD_LENGTH as usize + usize::from(u16_at(&tail, at + 20)) <= tail.len()
        });
    let Some(at) = eocd else {
        return Ok(None);
    };
    let (on_disk, total) = (u16_at(&tail, at + 8), u16_at(&tail, at + 10));
    let declared = u64::from(on_disk.max(total));
    let may_be_zip64 = on_disk == u16::MAX
        || total == u16::MAX
        || u32_at(&tail, at + 12) == u32::MAX
        || u32_at(&tail, at + 16) == u32::MAX;
    let eocd_offset = length - tail_length + at as u64;
    let found = |entries| {
        Ok(Some(ZipEndRecord {
            at: eocd_offset,
            entries,
            directory_offset: u64::from(u32_at(&tail, at + 16)),
        }))
    };
    if !may_be_zip64 || eocd_offset < ZIP64_LOCATOR_LENGTH {
        return found(declared);
    }
    let mut locator = [0; ZIP64_LOCATOR_LENGTH as usize];
    reader.seek(SeekFrom::Start(eocd_offset - ZIP64_LOCATOR_LENGTH))?;
    reader.read_exact(&mut locator)?;
    if &locator[..4] != ZIP64_LOCATOR_SIGNATURE {
        return found(declared);
    }
    let record_offset = u64_at(&locator, 8);
    let mut record = [0; 40];
    if record_offset.saturating_add(record.len() as u64) > eocd_offset {
        return found(declared);
    }
    reader.seek(SeekFrom::Start(record_offset))?;
    reader.read_exact(&mut record)?;
    if &record[..4] != ZIP64_EOCD_SIGNATURE {
        return found(declared);
    }
    // The classic record's 0xFFFF was a placeholder for these.
    found(u64_at(&record, 24).max(u64_at(&record, 32)))
}

/// Refuses, before anything is written, the two shapes of a zip bomb: an
/// entry whose declared expansion no honest deflate stream reaches, and
/// entries whose compressed data overlap (their compressed sizes add up to
/// more than the archive holds), which multiply one small kernel many times.
fn check_zip_bomb<R: io::Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    archive_length: u64,
) -> Result<(), ExtractError> {
    let mut compressed_total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index)?;
        let (size, packed) = (entry.size(), entry.compressed_size());
        if size > 1 << 20 && size / packed.max(1) > MAX_ZIP_RATIO {
            return Err(unsafe_entry(
                &names::escaped(entry.name()),
                format!(
                    "it claims {size} bytes from {packed} compressed ({}:1), more than deflate can reach ({MAX_ZIP_RATIO}:1): a zip bomb",
                    size / packed.max(1)
                ),
            ));
        }
        compressed_total = compressed_total.saturating_add(packed);
    }
    if compressed_total > archive_length {
        return Err(ExtractError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "its entries' compressed data add up to {compressed_total} bytes in a {archive_length}-byte archive: they overlap (a zip bomb)"
            ),
        )));
    }
    Ok(())
}

/// Zip times are local wall-clock times without a zone, as unzip reads them.
fn zip_time(time: zip::DateTime) -> Option<i64> {
    use chrono::{NaiveDate, TimeZone};
    let naive =
        NaiveDate::from_ymd_opt(time.year().into(), time.month().into(), time.day().into())?
            .and_hms_opt(
                time.hour().into(),
                time.minute().into(),
                time.second().into(),
            )?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp())
}
