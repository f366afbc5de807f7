//! Fuzz target: the install plan against a random revision and a random host.
//! The bytes build an appspec `files:` section (sources and destinations from
//! a small vocabulary, so that they collide), a revision tree of files,
//! folders and links, the paths already on the host, and the file-exists
//! behaviour (DISALLOW, OVERWRITE, RETAIN). Planning must not panic, and a
//! plan it makes must keep the rules: nothing is copied outside the
//! appspec's destinations, DISALLOW never copies over a file already there,
//! RETAIN never replaces one, and every copy's source lies in the revision.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use codedeploy_agent::appspec::{self, FileExistsBehavior};
use codedeploy_agent::install::{plan, Existing, Instruction, RevisionTree, SourceKind};

const NAMES: [&str; 6] = ["a", "b", "conf", "lib", "x.txt", "y.txt"];
const REVISION_ROOT: &str = "/rev";

/// A revision held in memory: revision-relative path → what it is.
struct Revision(BTreeMap<PathBuf, SourceKind>);

impl RevisionTree for Revision {
    fn kind(&self, relative: &Path) -> Option<SourceKind> {
        if relative.as_os_str().is_empty() {
            return Some(SourceKind::Directory);
        }
        self.0.get(relative).cloned()
    }

    fn children(&self, relative: &Path) -> Vec<OsString> {
        let names: BTreeSet<OsString> = self
            .0
            .keys()
            .filter(|path| path.parent() == Some(relative))
            .filter_map(|path| path.file_name().map(|n| n.to_os_string()))
            .collect();
        names.into_iter().collect()
    }

    fn absolute(&self, relative: &Path) -> PathBuf {
        Path::new(REVISION_ROOT).join(relative)
    }
}

/// Bytes, one at a time, zero once they run out.
struct Draw<'a>(std::slice::Iter<'a, u8>);

impl Draw<'_> {
    fn byte(&mut self) -> u8 {
        self.0.next().copied().unwrap_or(0)
    }

    fn path(&mut self, depth: u8) -> PathBuf {
        let parts = 1 + self.byte() % depth;
        (0..parts)
            .map(|_| NAMES[usize::from(self.byte()) % NAMES.len()])
            .collect()
    }
}

pub fn run(data: &[u8]) {
    let mut draw = Draw(data.iter());
    let behavior = match draw.byte() % 3 {
        0 => FileExistsBehavior::Disallow,
        1 => FileExistsBehavior::Overwrite,
        _ => FileExistsBehavior::Retain,
    };
    // The revision: each drawn path with its folders above it.
    let mut revision = BTreeMap::new();
    for _ in 0..draw.byte() % 12 {
        let path = draw.path(3);
        for ancestor in path.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                revision.insert(ancestor.to_path_buf(), SourceKind::Directory);
            }
        }
        let kind = match draw.byte() % 5 {
            0 => SourceKind::Directory,
            1 => SourceKind::FileLink,
            2 => SourceKind::Outside {
                target: PathBuf::from("/etc"),
            },
            _ => SourceKind::File,
        };
        revision.entry(path).or_insert(kind);
    }
    // The files section, sources from the same vocabulary, under /srv.
    let mut files = String::new();
    for _ in 0..1 + draw.byte() % 3 {
        let source = if draw.byte() % 4 == 0 {
            "/".to_string()
        } else {
            draw.path(2).display().to_string()
        };
        let destination = Path::new("/srv").join(draw.path(2));
        files.push_str(&format!(
            "  - source: {source}\n    destination: {}\n",
            destination.display()
        ));
    }
    let text = format!("version: 0.0\nos: linux\nfiles:\n{files}");
    let Ok(spec) = appspec::parse(&text, Path::new("/rev/appspec.yml")) else {
        return;
    };
    // The host: paths under /srv already there, files or folders.
    let mut host = BTreeMap::new();
    for _ in 0..draw.byte() % 10 {
        let path = Path::new("/srv").join(draw.path(3));
        let existing = if draw.byte() % 2 == 0 {
            Existing::Other
        } else {
            Existing::Directory
        };
        for ancestor in path.ancestors().skip(1) {
            host.insert(ancestor.to_path_buf(), Existing::Directory);
        }
        host.entry(path).or_insert(existing);
    }
    let on_host = |path: &Path| host.get(path).copied().unwrap_or(Existing::Missing);
    let Ok(planned) = plan(&spec, &Revision(revision), &on_host, behavior) else {
        return;
    };
    let destinations: Vec<PathBuf> = spec.files.iter().map(|f| f.destination.clone()).collect();
    for instruction in &planned.instructions {
        let Instruction::Copy {
            source,
            destination,
        } = instruction
        else {
            continue;
        };
        assert!(
            source.starts_with(REVISION_ROOT),
            "a copy from outside the revision: {source:?}"
        );
        assert!(
            destinations.iter().any(|d| destination.starts_with(d)),
            "a copy outside the appspec's destinations: {destination:?}"
        );
        if on_host(destination) == Existing::Other {
            assert_ne!(
                behavior,
                FileExistsBehavior::Disallow,
                "DISALLOW copied over {destination:?}"
            );
            assert_ne!(
                behavior,
                FileExistsBehavior::Retain,
                "RETAIN replaced {destination:?}"
            );
        }
    }
}
