//! The chain of folders a tree walk last found to be real directories (not
//! links, not files), relative to the tree's root. Unpack and the install
//! planner both meet paths in an order where each path shares most of its
//! folders with the one before: checking only the folders past the shared
//! part makes a folder's path walked once, not once per entry below it, so
//! deep nesting costs linear time instead of cubic. Pure: the caller looks
//! at the disk and says what it found.

use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub(crate) struct FolderChain(PathBuf);

impl FolderChain {
    /// How many leading folders of `folder` are known real directories.
    pub(crate) fn known(&self, folder: &Path) -> usize {
        self.0
            .components()
            .zip(folder.components())
            .take_while(|(known, asked)| known == asked)
            .count()
    }

    /// The folders of `folder` not known yet, outermost first, each joined
    /// to `root`: the ones the caller must look at.
    pub(crate) fn unknown<'p>(
        &self,
        root: &Path,
        folder: &'p Path,
    ) -> impl Iterator<Item = PathBuf> + 'p {
        let known = self.known(folder);
        let mut current = root.to_path_buf();
        folder
            .components()
            .enumerate()
            .filter_map(move |(depth, component)| {
                current.push(component);
                (depth >= known).then(|| current.clone())
            })
    }

    /// Every folder of `folder` has been found a real directory. A folder the
    /// chain already holds keeps the deeper chain.
    pub(crate) fn record(&mut self, folder: &Path) {
        if self.known(folder) < folder.components().count() {
            self.0 = folder.to_path_buf();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_past_the_shared_part_are_unknown() {
        let mut chain = FolderChain::default();
        assert_eq!(chain.known(Path::new("a/b")), 0);
        chain.record(Path::new("a/b/c"));
        let cases = [
            ("a/b/c", 3),
            ("a/b/c/d", 3),
            ("a/b", 2),
            ("a/x/c", 1),
            ("x", 0),
            ("", 0),
        ];
        for (folder, known) in cases {
            assert_eq!(chain.known(Path::new(folder)), known, "{folder}");
        }
        // A shallower folder of the chain keeps the deeper chain.
        chain.record(Path::new("a"));
        assert_eq!(chain.known(Path::new("a/b/c")), 3);
        let unknown: Vec<PathBuf> = chain
            .unknown(Path::new("/r"), Path::new("a/b/x/y"))
            .collect();
        assert_eq!(unknown, [Path::new("/r/a/b/x"), Path::new("/r/a/b/x/y")]);
        // Another branch replaces it.
        chain.record(Path::new("a/x"));
        assert_eq!(chain.known(Path::new("a/b/c")), 1);
        assert_eq!(chain.known(Path::new("a/x/y")), 2);
    }
}
