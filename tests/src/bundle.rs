//! Revision bundles: an in-memory description of a revision (relative path →
//! file contents and mode, directories, symlinks) turned into the bytes of a
//! `tar`, `tgz` or `zip` bundle, optionally wrapped in a single top-level
//! folder the way `git archive --prefix` or a zipped project folder does.
//!
//! Building bundles is all this module does; uploading them is `s3.rs`'s job.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Cursor, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The bundle types of an S3 revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleType {
    Tar,
    Tgz,
    Zip,
}

impl BundleType {
    /// The name used in the deployment specification (`BundleType`).
    pub fn as_str(self) -> &'static str {
        match self {
            BundleType::Tar => "tar",
            BundleType::Tgz => "tgz",
            BundleType::Zip => "zip",
        }
    }

    /// The usual file extension for an object key.
    pub fn extension(self) -> &'static str {
        match self {
            BundleType::Tar => "tar",
            BundleType::Tgz => "tar.gz",
            BundleType::Zip => "zip",
        }
    }
}

impl fmt::Display for BundleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one path of a revision is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    File { contents: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// A revision described in memory. Paths are relative, `/`-separated.
/// Parent directories are implied (mode 0755) and written to the archive
/// before their content, as archiving tools do.
#[derive(Clone, Debug, Default)]
pub struct Revision {
    entries: BTreeMap<String, Entry>,
    top_folder: Option<String>,
    /// Numeric owner and group of tar entries; the builder's own otherwise.
    owners: BTreeMap<String, (u32, u32)>,
}

impl Revision {
    pub fn new() -> Self {
        Self::default()
    }

    /// A regular file with mode 0644.
    pub fn file(self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.file_with_mode(path, contents, 0o644)
    }

    /// An executable file (mode 0755), e.g. a hook script.
    pub fn script(self, path: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.file_with_mode(path, contents, 0o755)
    }

    pub fn file_with_mode(mut self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        let contents = contents.into();
        self.entries
            .insert(clean(path), Entry::File { contents, mode });
        self
    }

    /// An explicit (possibly empty) directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.insert(clean(path), Entry::Dir { mode });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.insert(
            clean(path),
            Entry::Symlink {
                target: target.to_string(),
            },
        );
        self
    }

    /// Drops `path` and everything below it.
    pub fn without(mut self, path: &str) -> Self {
        let path = clean(path);
        let prefix = format!("{path}/");
        self.entries
            .retain(|p, _| *p != path && !p.starts_with(&prefix));
        self
    }

    /// Gives `path` the numeric owner `uid` and group `gid` in a tar or tgz
    /// bundle (zip entries carry no owner), as if archived from a host where
    /// another user owned it.
    pub fn owned_by(mut self, path: &str, uid: u32, gid: u32) -> Self {
        self.owners.insert(clean(path), (uid, gid));
        self
    }

    /// Puts every entry under one top-level folder `name/`.
    pub fn with_top_folder(mut self, name: &str) -> Self {
        self.top_folder = Some(clean(name));
        self
    }

    /// Reads a directory tree from disk (files keep their permission bits,
    /// symlinks are kept as links).
    pub fn from_dir(root: &Path) -> io::Result<Self> {
        let mut revision = Revision::new();
        read_tree(root, "", &mut revision)?;
        Ok(revision)
    }

    /// Rewrites the contents of every file that is valid UTF-8 (e.g. to fill
    /// in placeholders such as an install root).
    pub fn map_text(mut self, f: impl Fn(&str) -> String) -> Self {
        for entry in self.entries.values_mut() {
            if let Entry::File { contents, .. } = entry {
                if let Ok(text) = std::str::from_utf8(contents) {
                    *contents = f(text).into_bytes();
                }
            }
        }
        self
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// Every entry with its path inside the archive, parents included,
    /// parents first.
    fn archive_entries(&self) -> Vec<(String, Entry)> {
        let mut all: BTreeMap<String, Entry> = BTreeMap::new();
        let prefix = self.top_folder.as_deref();
        if let Some(top) = prefix {
            all.insert(top.to_string(), Entry::Dir { mode: 0o755 });
        }
        for (path, entry) in &self.entries {
            let full = match prefix {
                Some(top) => format!("{top}/{path}"),
                None => path.clone(),
            };
            let mut parent = Path::new(&full).parent();
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                all.entry(p.to_string_lossy().into_owned())
                    .or_insert(Entry::Dir { mode: 0o755 });
                parent = p.parent();
            }
            all.insert(full, entry.clone());
        }
        // BTreeMap order puts "a" before "a/b": parents come first.
        all.into_iter().collect()
    }

    /// The owner set with [`Revision::owned_by`] for an archive path (which
    /// includes the top-level folder, if any).
    fn owner_in_archive(&self, archive_path: &str) -> Option<(u32, u32)> {
        let relative = match &self.top_folder {
            Some(top) => archive_path.strip_prefix(top.as_str())?.strip_prefix('/')?,
            None => archive_path,
        };
        self.owners.get(relative).copied()
    }

    pub fn build(&self, bundle_type: BundleType) -> io::Result<Vec<u8>> {
        match bundle_type {
            BundleType::Tar => self.to_tar(),
            BundleType::Tgz => self.to_tgz(),
            BundleType::Zip => self.to_zip(),
        }
    }

    pub fn to_tar(&self) -> io::Result<Vec<u8>> {
        let (uid, gid) = own_ids();
        let mtime = chrono::Utc::now().timestamp().max(0) as u64;
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in self.archive_entries() {
            let (uid, gid) = self.owner_in_archive(&path).unwrap_or((uid, gid));
            let mut header = tar::Header::new_gnu();
            header.set_uid(uid.into());
            header.set_gid(gid.into());
            header.set_mtime(mtime);
            match entry {
                Entry::File { contents, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(mode);
                    header.set_size(contents.len() as u64);
                    builder.append_data(&mut header, &path, contents.as_slice())?;
                }
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, &path, &target)?;
                }
            }
        }
        builder.into_inner()
    }

    pub fn to_tgz(&self) -> io::Result<Vec<u8>> {
        let tar = self.to_tar()?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&tar)?;
        encoder.finish()
    }

    pub fn to_zip(&self) -> io::Result<Vec<u8>> {
        use zip::write::SimpleFileOptions;
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let base =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (path, entry) in self.archive_entries() {
            match entry {
                Entry::File { contents, mode } => {
                    writer
                        .start_file(path, base.unix_permissions(mode))
                        .map_err(io::Error::other)?;
                    writer.write_all(&contents)?;
                }
                Entry::Dir { mode } => writer
                    .add_directory(format!("{path}/"), base.unix_permissions(mode))
                    .map_err(io::Error::other)?,
                Entry::Symlink { target } => writer
                    .add_symlink(path, target, base)
                    .map_err(io::Error::other)?,
            }
        }
        Ok(writer.finish().map_err(io::Error::other)?.into_inner())
    }
}

fn clean(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    assert!(
        !trimmed.is_empty() && !trimmed.split('/').any(|c| c.is_empty() || c == ".."),
        "revision paths are relative, without empty or `..` components: {path:?}"
    );
    trimmed.to_string()
}

fn own_ids() -> (u32, u32) {
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .unwrap_or((0, 0))
}

fn read_tree(dir: &Path, prefix: &str, revision: &mut Revision) -> io::Result<()> {
    let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let name = child.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(child.path())?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(child.path())?;
            revision.entries.insert(
                rel,
                Entry::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            );
        } else if meta.is_dir() {
            revision.entries.insert(rel.clone(), Entry::Dir { mode });
            read_tree(&child.path(), &rel, revision)?;
        } else {
            let contents = std::fs::read(child.path())?;
            revision.entries.insert(rel, Entry::File { contents, mode });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Revision {
        Revision::new()
            .file("appspec.yml", "version: 0.0\nos: linux\n")
            .script("scripts/start.sh", "#!/bin/sh\necho hi\n")
            .file("content/index.html", "<h1>hi</h1>")
            .symlink("content/current", "index.html")
    }

    fn tar_listing(bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let mode = e.header().mode().unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, mode, data)
            })
            .collect()
    }

    #[test]
    fn tar_has_parents_first_and_keeps_modes() {
        let listing = tar_listing(&sample().to_tar().unwrap());
        let names: Vec<_> = listing.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "appspec.yml",
                "content/",
                "content/current",
                "content/index.html",
                "scripts/",
                "scripts/start.sh"
            ]
        );
        let script = listing.iter().find(|e| e.0 == "scripts/start.sh").unwrap();
        assert_eq!(script.2, 0o755);
        assert_eq!(script.3, b"#!/bin/sh\necho hi\n");
        let link = listing.iter().find(|e| e.0 == "content/current").unwrap();
        assert_eq!(link.1, tar::EntryType::Symlink);
    }

    #[test]
    fn tar_entries_carry_the_owners_set_for_them() {
        let bytes = sample()
            .owned_by("content/index.html", 4321, 8765)
            .with_top_folder("app")
            .to_tar()
            .unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let owners: Vec<(String, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (path, e.header().uid().unwrap(), e.header().gid().unwrap())
            })
            .collect();
        let (own_uid, own_gid) = own_ids();
        for (path, uid, gid) in owners {
            if path == "app/content/index.html" {
                assert_eq!((uid, gid), (4321, 8765));
            } else {
                assert_eq!((uid, gid), (own_uid.into(), own_gid.into()), "{path}");
            }
        }
    }

    #[test]
    fn tgz_is_gzipped_tar_with_top_folder() {
        let bytes = sample().with_top_folder("myapp-1.0").to_tgz().unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        let listing = tar_listing(&tar);
        assert_eq!(listing[0].0, "myapp-1.0/");
        assert!(listing.iter().all(|e| e.0.starts_with("myapp-1.0/")));
        assert!(listing.iter().any(|e| e.0 == "myapp-1.0/appspec.yml"));
    }

    #[test]
    fn zip_keeps_unix_modes_and_contents() {
        let bytes = sample().to_zip().unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut script = archive.by_name("scripts/start.sh").unwrap();
        assert_eq!(script.unix_mode().unwrap() & 0o7777, 0o755);
        let mut text = String::new();
        script.read_to_string(&mut text).unwrap();
        assert_eq!(text, "#!/bin/sh\necho hi\n");
        drop(script);
        assert!(archive.by_name("scripts/").unwrap().is_dir());
    }

    #[test]
    fn from_dir_reads_modes_and_map_text_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("scripts/a.sh"), "echo @ROOT@").unwrap();
        std::fs::write(dir.path().join("scripts/b"), "dropped").unwrap();
        std::fs::set_permissions(
            dir.path().join("scripts/a.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        let revision = Revision::from_dir(dir.path())
            .unwrap()
            .map_text(|t| t.replace("@ROOT@", "/srv"))
            .without("scripts/b");
        assert_eq!(
            revision.entries().get("scripts/a.sh"),
            Some(&Entry::File {
                contents: b"echo /srv".to_vec(),
                mode: 0o750
            })
        );
        assert!(!revision.entries().contains_key("scripts/b"));
        assert!(revision.entries().contains_key("scripts"));
    }
}
