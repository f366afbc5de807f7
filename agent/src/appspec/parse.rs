//! appspec.yml text → [`AppSpec`]. Pure: no file access. Each value is checked
//! inside its own serde visitor, so that serde_norway stamps every error with the
//! key path (`hooks.BeforeInstall[0].timeout`) and the line of the offending
//! value. A key written twice in one mapping, at any depth, is a warning, not
//! an error: the official agent's YAML parser (Ruby's Psych) silently keeps the
//! last, and a revision it deploys must deploy here too; we keep the last as
//! well, and say so. YAML typing follows APPSPEC.md: `version` must be the number 0.0, `mode`
//! is taken as the digits written, the appspec's `file_exists_behavior` is
//! case-sensitive. Paths holding a control character are refused, and every
//! value a message quotes is escaped ([`crate::names`]). A leading byte-order
//! mark is skipped with a warning naming it (the YAML parser would read it as
//! part of the first key).
//!
//! This file reads the document and its top-level scalars (`version`, `os`,
//! `file_exists_behavior`); each section has its own reader (`files`,
//! `permissions`, `hooks`), all built on `node`'s located values.
mod duplicate_keys;
mod files;
mod hooks;
mod node;
mod permissions;

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::error::{AppSpecError, Problem};
use super::model::{AppSpec, AppSpecVersion, FileMapping, Os};
use super::FileExistsBehavior;
use crate::names::{self, escaped};
use duplicate_keys::duplicate_keys;
use hooks::HooksSection;
use node::{Field, FromScalar, List, Scalar};
use permissions::PermissionEntry;

/// Refuses an appspec path holding a control character: it would reach the
/// cleanup file and the terminal. Pure.
fn check_path(written: &str) -> Result<(), Problem> {
    names::check(written).map_err(|e| format!("'{}' holds {e}; remove it", escaped(written)))
}

/// The most flow-collection openers (`[` and `{`) an appspec may hold. The
/// YAML scanner's cost grows with the square of flow nesting depth (100,000
/// nested `[` take minutes), and the depth cannot exceed the number of
/// openers; real appspecs hold a handful.
pub const MAX_FLOW_OPENERS: usize = 10_000;

/// Parses and validates an appspec. `file` is only used in error messages.
pub fn parse(text: &str, file: &Path) -> Result<AppSpec, AppSpecError> {
    check_limits(text, file)?;
    let (text, bom) = match text.strip_prefix('\u{feff}') {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    let document: Document =
        serde_norway::from_str(text).map_err(|source| AppSpecError::Invalid {
            file: file.to_path_buf(),
            source,
        })?;
    match document {
        Document::Empty => Err(AppSpecError::Empty {
            file: file.to_path_buf(),
        }),
        Document::AppSpec(mut appspec) => {
            appspec.warnings.splice(0..0, duplicate_keys(text));
            if bom {
                appspec.warnings.insert(0, "the file starts with a byte-order mark (U+FEFF), which is ignored; save it as UTF-8 without one".to_string());
            }
            Ok(*appspec)
        }
    }
}

/// What is refused before any YAML parser sees the text, whatever reads it
/// (Install, `validate`): a parse of it could take minutes.
pub fn check_limits(text: &str, file: &Path) -> Result<(), AppSpecError> {
    let openers = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    if openers > MAX_FLOW_OPENERS {
        return Err(AppSpecError::TooManyFlowCollections {
            file: file.to_path_buf(),
            openers,
            limit: MAX_FLOW_OPENERS,
        });
    }
    Ok(())
}

enum Document {
    Empty,
    AppSpec(Box<AppSpec>),
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with at least version and os")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::Empty)
    }

    fn visit_none<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::Empty)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut version = None;
        let mut os = None;
        let mut file_exists_behavior = None;
        let mut files = Vec::new();
        let mut permissions = Vec::new();
        let mut hooks = Vec::new();
        let mut warnings = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => version = map.next_value::<Field<Option<AppSpecVersion>>>()?.0,
                "os" => os = map.next_value::<Field<Option<Os>>>()?.0,
                "file_exists_behavior" => {
                    file_exists_behavior = map.next_value::<Field<Option<FileExistsBehavior>>>()?.0
                }
                "files" => files = map.next_value::<List<FileMapping>>()?.0,
                "permissions" => {
                    let entries = map.next_value::<List<PermissionEntry>>()?.0;
                    permissions = Vec::with_capacity(entries.len());
                    for entry in entries {
                        warnings.extend(entry.warnings);
                        permissions.push(entry.permission);
                    }
                }
                "hooks" => {
                    let section = map.next_value::<HooksSection>()?;
                    warnings.extend(section.warnings);
                    hooks = section.hooks;
                }
                other => {
                    map.next_value::<IgnoredAny>()?;
                    warnings.push(format!(
                        "unknown top-level key '{}' is ignored (known keys: version, os, file_exists_behavior, files, permissions, hooks)",
                        escaped(other)
                    ));
                }
            }
        }
        let version =
            version.ok_or_else(|| de::Error::custom("version is missing; it must be 0.0"))?;
        let os = os.ok_or_else(|| de::Error::custom("os is missing; it must be linux"))?;
        Ok(Document::AppSpec(Box::new(AppSpec {
            version,
            os,
            file_exists_behavior,
            files,
            permissions,
            hooks,
            warnings,
        })))
    }
}

impl FromScalar for Option<AppSpecVersion> {
    const EXPECTING: &'static str = "the number 0.0";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        // Ruby compares with `== 0.0`, which the integer 0 also satisfies.
        match scalar {
            Scalar::Null => Ok(None),
            Scalar::Float(0.0) => Ok(Some(AppSpecVersion::V0_0)),
            Scalar::Int(0) => Ok(Some(AppSpecVersion::V0_0)),
            Scalar::Str(s) => Err(format!(
                "must be the number 0.0, not the string \"{s}\" (remove the quotes)"
            )),
            other => Err(format!(
                "{} is not supported; the only appspec version is 0.0",
                other.describe()
            )),
        }
    }
}

impl FromScalar for Option<Os> {
    const EXPECTING: &'static str = "linux";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        match scalar {
            Scalar::Null => Ok(None),
            Scalar::Str("linux") => Ok(Some(Os::Linux)),
            Scalar::Str("windows") => Err(
                "windows is not supported on this host: this agent deploys to linux".to_string(),
            ),
            other => Err(format!(
                "{} is not supported; use linux (or windows on Windows hosts)",
                other.describe()
            )),
        }
    }
}

impl FromScalar for Option<FileExistsBehavior> {
    const EXPECTING: &'static str = "one of DISALLOW, OVERWRITE, RETAIN";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        match scalar {
            Scalar::Null => Ok(None),
            Scalar::Str(s) => s.parse().map(Some),
            other => Err(format!(
                "{} is not valid; use one of {}",
                other.describe(),
                FileExistsBehavior::VALID
            )),
        }
    }
}
