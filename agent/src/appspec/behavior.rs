//! What Install does when a file it is about to copy already exists.

use std::fmt;
use std::str::FromStr;

use super::error::Problem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileExistsBehavior {
    /// Fail the deployment (the default).
    #[default]
    Disallow,
    /// Replace the existing file.
    Overwrite,
    /// Keep the existing file and skip the copy.
    Retain,
}

impl FileExistsBehavior {
    pub const VALID: &'static str = "DISALLOW, OVERWRITE, RETAIN";

    pub fn name(self) -> &'static str {
        match self {
            FileExistsBehavior::Disallow => "DISALLOW",
            FileExistsBehavior::Overwrite => "OVERWRITE",
            FileExistsBehavior::Retain => "RETAIN",
        }
    }
}

impl FromStr for FileExistsBehavior {
    type Err = Problem;

    /// Exact, case-sensitive names (the appspec's rule); callers upper-case the
    /// deployment's override first.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "DISALLOW" => Ok(FileExistsBehavior::Disallow),
            "OVERWRITE" => Ok(FileExistsBehavior::Overwrite),
            "RETAIN" => Ok(FileExistsBehavior::Retain),
            other => Err(format!(
                "file_exists_behavior '{other}' is not valid; use one of {}",
                FileExistsBehavior::VALID
            )),
        }
    }
}

impl fmt::Display for FileExistsBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
