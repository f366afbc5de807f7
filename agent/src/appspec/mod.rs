//! The appspec: model, parser and validation, plus finding the file inside an
//! unpacked revision. Everything here is pure except [`load`], which only reads
//! the one file; nothing here installs, runs or changes anything.

mod behavior;
mod error;
mod model;
mod parse;
mod paths;
mod permission;

use std::path::Path;

pub use behavior::FileExistsBehavior;
pub use error::{AppSpecError, Problem};
pub use model::{AppSpec, AppSpecVersion, EventHooks, FileMapping, HookScript, Os};
pub use parse::{check_limits, parse, MAX_FLOW_OPENERS};
pub use paths::{normalize_host_path, RevisionPath};
pub use permission::{
    AclEntry, AclKind, AclPerms, Glob, Mode, ObjectKinds, Permission, SeLinuxContext, SeLinuxRange,
};

use crate::event::LifecycleEvent;

/// How to find the appspec inside `deployment-archive/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSpecLookup {
    /// Hooks and noop checks: exactly the spec's AppSpecFilename.
    Exact,
    /// Install: the given name, else `appspec.yaml`, else `appspec.yml`.
    InstallFallback,
}

/// The largest appspec the agent reads: far above any real one, small enough
/// that a hostile revision cannot make the agent hold gigabytes of YAML.
pub const MAX_APPSPEC_BYTES: u64 = 4 * 1024 * 1024;

enum LoadError {
    Io(std::io::Error),
    TooLarge(u64),
    NotUtf8(std::str::Utf8Error),
}

/// The file's text, refusing one larger than [`MAX_APPSPEC_BYTES`] before
/// reading it (and, should it grow meanwhile, after reading one byte more).
fn read_bounded(path: &Path) -> Result<String, LoadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(LoadError::Io)?;
    let size = file.metadata().map_err(LoadError::Io)?.len();
    if size > MAX_APPSPEC_BYTES {
        return Err(LoadError::TooLarge(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_APPSPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(LoadError::Io)?;
    if bytes.len() as u64 > MAX_APPSPEC_BYTES {
        return Err(LoadError::TooLarge(bytes.len() as u64));
    }
    // Only the small Utf8Error is kept: the FromUtf8Error holds all the bytes.
    String::from_utf8(bytes).map_err(|e| LoadError::NotUtf8(e.utf8_error()))
}

/// Reads one appspec file as [`load`] does: over [`MAX_APPSPEC_BYTES`], or
/// not UTF-8, it is refused.
pub fn read(path: &Path) -> Result<String, AppSpecError> {
    read_bounded(path).map_err(|error| match error {
        LoadError::Io(source) => AppSpecError::Read {
            path: path.to_path_buf(),
            source,
        },
        LoadError::TooLarge(size) => AppSpecError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_APPSPEC_BYTES,
        },
        LoadError::NotUtf8(source) => AppSpecError::NotUtf8 {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Reads and parses the appspec of an unpacked revision.
pub fn load(
    archive_dir: &Path,
    appspec_filename: &str,
    lookup: AppSpecLookup,
) -> Result<AppSpec, AppSpecError> {
    let fallbacks: &[&str] = match lookup {
        AppSpecLookup::Exact => &[],
        AppSpecLookup::InstallFallback => &["appspec.yaml", "appspec.yml"],
    };
    for name in std::iter::once(appspec_filename).chain(fallbacks.iter().copied()) {
        let path = archive_dir.join(name);
        match read(&path) {
            Err(AppSpecError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                continue
            }
            text => return parse(&text?, &path),
        }
    }
    Err(AppSpecError::NotFound {
        expected: appspec_filename.to_string(),
        archive_dir: archive_dir.to_path_buf(),
        path: archive_dir.join(appspec_filename),
    })
}

impl AppSpec {
    /// The local CLI's AllPossibleLifecycleEvents check (Install step 2): every
    /// event the appspec names, and every standard hook event, must be in the
    /// list; every custom event in the list must be named by the appspec.
    pub fn check_lifecycle_events(
        &self,
        all_possible: &[String],
        appspec_filename: &str,
    ) -> Result<(), AppSpecError> {
        let hook_events = LifecycleEvent::STANDARD
            .iter()
            .filter(|e| !e.is_agent_action() && !e.is_reserved());
        let mut unknown: Vec<String> = Vec::new();
        for name in self
            .hooks
            .iter()
            .map(|h| h.event.name())
            .chain(hook_events.map(LifecycleEvent::name))
        {
            if !all_possible.iter().any(|p| p == name) && !unknown.iter().any(|u| u == name) {
                unknown.push(name.to_string());
            }
        }
        if !unknown.is_empty() {
            return Err(AppSpecError::UnknownLifecycleEvents {
                file_name: appspec_filename.to_string(),
                events: unknown,
            });
        }
        let missing: Vec<&str> = all_possible
            .iter()
            .map(String::as_str)
            .filter(|name| {
                let event = LifecycleEvent::from_name(name);
                let custom = matches!(event, LifecycleEvent::Custom(_)) || event.is_reserved();
                custom && !self.hooks.iter().any(|h| h.event == event)
            })
            .collect();
        if !missing.is_empty() {
            return Err(AppSpecError::CustomEventWithoutHooks {
                file_name: appspec_filename.to_string(),
                event: missing.join(","),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
