//! The two kinds of path an appspec names: paths inside the revision (file
//! sources, hook locations) and absolute paths on the host (destinations,
//! permission objects). Both are normalised lexically once, at parse time, so that
//! later comparisons are plain equality. Pure: never touches the file system, so
//! symlinks are not resolved here (the installer and the hook runner guard those).

use std::fmt;
use std::path::{Component, Path, PathBuf};

/// A path inside the revision, as written in the appspec and as a normalised
/// relative path that cannot climb out of the revision root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionPath {
    written: String,
    relative: PathBuf,
}

impl RevisionPath {
    /// `"/"`, `""` and `"."` all name the revision root (the official agent joins
    /// the value onto the archive directory, so a leading `/` stays inside it).
    /// `None` when `..` would leave the revision.
    pub fn parse(written: &str) -> Option<RevisionPath> {
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for component in Path::new(written).components() {
            match component {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    parts.pop()?;
                }
                Component::Normal(part) => parts.push(part),
            }
        }
        Some(RevisionPath {
            written: written.to_string(),
            relative: parts.iter().collect(),
        })
    }

    /// The path as the appspec author wrote it, for messages.
    pub fn written(&self) -> &str {
        &self.written
    }

    /// Relative to the revision root; empty for the root itself.
    pub fn relative(&self) -> &Path {
        &self.relative
    }

    pub fn is_root(&self) -> bool {
        self.relative.as_os_str().is_empty()
    }

    /// Where this path lies under an unpacked revision.
    pub fn under(&self, archive_dir: &Path) -> PathBuf {
        if self.is_root() {
            archive_dir.to_path_buf()
        } else {
            archive_dir.join(&self.relative)
        }
    }
}

impl fmt::Display for RevisionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// An absolute host path with `.`, `..`, repeated and trailing slashes resolved
/// lexically (`..` at the root stays at the root, as in `File.expand_path`).
/// `None` for a relative path: the official agent would resolve it against its
/// own working directory, which no appspec author can rely on.
pub fn normalize_host_path(written: &str) -> Option<PathBuf> {
    let path = Path::new(written);
    if !path.is_absolute() {
        return None;
    }
    let mut normalized = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                normalized.pop();
            }
            Component::Normal(part) => normalized.push(part),
        }
    }
    Some(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_paths_normalise_and_stay_inside() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/", Some("")),
            ("", Some("")),
            (".", Some("")),
            ("scripts/start.sh", Some("scripts/start.sh")),
            ("/scripts/start.sh", Some("scripts/start.sh")),
            ("./scripts//start.sh", Some("scripts/start.sh")),
            ("scripts/../bin/run", Some("bin/run")),
            ("scripts/", Some("scripts")),
            ("..", None),
            ("../etc/passwd", None),
            ("/../x", None),
            ("a/../../x", None),
        ];
        for (written, expected) in cases {
            let parsed = RevisionPath::parse(written);
            assert_eq!(
                parsed.as_ref().map(|p| p.relative().to_str().unwrap()),
                *expected,
                "{written}"
            );
        }
    }

    #[test]
    fn revision_root_is_the_archive_dir_itself() {
        let root = RevisionPath::parse("/").unwrap();
        assert!(root.is_root());
        assert_eq!(root.under(Path::new("/a/archive")), Path::new("/a/archive"));
        let file = RevisionPath::parse("/app/x").unwrap();
        assert_eq!(
            file.under(Path::new("/a/archive")),
            Path::new("/a/archive/app/x")
        );
    }

    #[test]
    fn host_paths_normalise_lexically() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/var/www", Some("/var/www")),
            ("/var/www/", Some("/var/www")),
            ("/var//www/./html", Some("/var/www/html")),
            ("/var/www/../log", Some("/var/log")),
            ("/..", Some("/")),
            ("/", Some("/")),
            ("var/www", None),
            ("~/app", None),
            ("", None),
        ];
        for (written, expected) in cases {
            assert_eq!(
                normalize_host_path(written).as_deref(),
                expected.map(Path::new),
                "{written}"
            );
        }
    }
}
