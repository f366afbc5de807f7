//! Reading tar and tgz bundles: each entry's header becomes an entry
//! description (kind, link target, sparse layout, mode, owner, time) handed to
//! the target, which decides everything else. Gzip is inflated on the
//! read-ahead thread. Never writes to disk, and never trusts a header's
//! numbers or names: the target and `sparse` check them.

use std::io::Read;

use nix::unistd::{Gid, Group, Uid, User};

use super::target::Target;
use super::{
    entry_io, unsafe_entry, Attributes, EntryKind, ExtractError, SparseContent, TarCompression,
};
use crate::bundle::read_ahead::read_ahead;
use crate::bundle::sparse::{self, SparseLayout};
use crate::names;

/// Extracts a tar or tgz with two threads: `reader` is read (and inflated)
/// on the read-ahead thread while this one writes the entries.
pub(super) fn extract(
    mut reader: impl Read + Send,
    compression: TarCompression,
    target: &mut Target,
) -> Result<(), ExtractError> {
    let entries = |tar: &mut dyn Read| extract_entries(tar, target);
    match compression {
        TarCompression::Gzip => read_ahead(&mut flate2::read::GzDecoder::new(reader), entries),
        TarCompression::None => read_ahead(&mut reader, entries),
    }
}

/// Each entry of the archive in `reader`, described and handed to `target`.
fn extract_entries(reader: impl Read, target: &mut Target) -> Result<(), ExtractError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let mut path = entry.path()?.into_owned();
        let header = entry.header();
        let entry_type = header.entry_type();
        let kind = match entry_type {
            tar::EntryType::GNUSparse => {
                EntryKind::SparseFile(SparseContent::Expanded { size: entry.size() })
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => match pax_sparse(&mut entry)? {
                Some(layout) => {
                    // 0.1 and 1.0 name the file in a record; the header
                    // holds a made-up `…/GNUSparseFile.<pid>/<name>`.
                    if let Some(real) = &layout.name {
                        path = real.clone();
                    }
                    EntryKind::SparseFile(SparseContent::Pax {
                        layout,
                        carried: entry.size(),
                    })
                }
                None => EntryKind::File,
            },
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let name = names::escaped(&path);
                let target_path = entry
                    .link_name()?
                    .ok_or_else(|| unsafe_entry(&name, "a link without a target"))?
                    .into_owned();
                if entry_type == tar::EntryType::Symlink {
                    EntryKind::Symlink(target_path)
                } else {
                    EntryKind::HardLink(target_path)
                }
            }
            // Metadata records that carry no file of their own.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(unsafe_entry(
                    &names::escaped(&path),
                    "device nodes and fifos are not allowed in a revision",
                ))
            }
            other => {
                return Err(unsafe_entry(
                    &names::escaped(&path),
                    format!("unsupported entry type {other:?}"),
                ))
            }
        };
        // Named once its real name is known (a PAX sparse file's record).
        let name = names::escaped(&path);
        let header = entry.header();
        let attributes = Attributes {
            mode: header.mode().map_err(|e| entry_io(&name, e))? & 0o7777,
            owner: target
                .restores_owners()
                .then(|| tar_owner(header))
                .flatten(),
            mtime: header.mtime().ok().and_then(|t| i64::try_from(t).ok()),
        };
        target.extract(&name, &path, kind, attributes, &mut entry)?;
    }
    target.finish()
}

/// The PAX sparse layout an entry's extended header gives, if any. A record
/// that is not UTF-8 cannot be one of GNU tar's sparse records and is passed
/// over, as the tar crate passes over records it does not know.
fn pax_sparse<R: Read>(entry: &mut tar::Entry<R>) -> Result<Option<SparseLayout>, ExtractError> {
    let name = names::escaped(entry.path()?.as_ref());
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let mut records = Vec::new();
    for extension in extensions {
        let extension = extension.map_err(|source| entry_io(&name, source))?;
        if let (Ok(key), Ok(value)) = (extension.key(), extension.value()) {
            records.push((key, value));
        }
    }
    sparse::pax_layout(records).map_err(|error| unsafe_entry(&name, error.to_string()))
}

/// As GNU tar run by root: the archive's user and group names when they exist
/// on this host, else the numeric ids.
fn tar_owner(header: &tar::Header) -> Option<(Uid, Gid)> {
    let uid = header
        .username()
        .ok()
        .flatten()
        .filter(|n| !n.is_empty())
        .and_then(|n| User::from_name(n).ok().flatten())
        .map(|u| u.uid)
        .or_else(|| {
            header
                .uid()
                .ok()
                .and_then(|id| u32::try_from(id).ok())
                .map(Uid::from_raw)
        })?;
    let gid = header
        .groupname()
        .ok()
        .flatten()
        .filter(|n| !n.is_empty())
        .and_then(|n| Group::from_name(n).ok().flatten())
        .map(|g| g.gid)
        .or_else(|| {
            header
                .gid()
                .ok()
                .and_then(|id| u32::try_from(id).ok())
                .map(Gid::from_raw)
        })?;
    Some((uid, gid))
}
