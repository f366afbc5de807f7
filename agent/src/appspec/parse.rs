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

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::AppSpecError;
use super::model::{AppSpec, AppSpecVersion, EventHooks, FileMapping, HookScript, Os};
use super::paths::{normalize_host_path, RevisionPath};
use super::permission::{
    AclEntry, Glob, Mode, ObjectKinds, Permission, SeLinuxContext, SeLinuxRange,
};
use super::FileExistsBehavior;
use crate::event::LifecycleEvent;
use crate::names::{self, escaped};

/// Refuses an appspec path holding a control character: it would reach the
/// cleanup file and the terminal. Pure.
fn check_path(written: &str) -> Result<(), String> {
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

/// A warning for every key written twice in one mapping, at any depth, named
/// by the key path of its mapping (`files[0]: 'destination' ...`). YAML the
/// strict parse refuses ends the walk: its error is reported there.
fn duplicate_keys(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let walk = KeyWalk {
        path: String::new(),
        found: &mut found,
    };
    let _ = de::DeserializeSeed::deserialize(walk, serde_norway::Deserializer::from_str(text));
    found
}

/// Walks any YAML value, noting the keys repeated in its mappings.
struct KeyWalk<'f> {
    /// The key path of the value walked; empty at the top.
    path: String,
    found: &'f mut Vec<String>,
}

impl<'de> de::DeserializeSeed<'de> for KeyWalk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyWalk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    /// A tagged value (`!tag value`): its value is walked.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (IgnoredAny, value) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(value, self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(KeyWalk {
                path: format!("{}[{index}]", self.path),
                found: &mut *self.found,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(Field(KeyName(key))) = map.next_key::<Field<KeyName>>()? {
            let path = match self.path.is_empty() {
                true => key.clone(),
                false => format!("{}.{key}", self.path),
            };
            if !seen.insert(key.clone()) {
                self.found.push(match self.path.is_empty() {
                    true => format!(
                        "top-level key '{}' appears more than once; only the last one counts",
                        escaped(&key)
                    ),
                    false => format!(
                        "{}: '{}' appears more than once; only the last one counts",
                        escaped(&self.path),
                        escaped(&key)
                    ),
                });
            }
            map.next_value_seed(KeyWalk {
                path,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }
}

/// A mapping key as text. A key that is itself a list or a mapping (no
/// appspec has one) ends the walk.
struct KeyName(String);

impl FromScalar for KeyName {
    const EXPECTING: &'static str = "a mapping key";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        Ok(KeyName(scalar.text().unwrap_or_else(|| "null".to_string())))
    }
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

/// One YAML scalar, typed as the YAML parser typed it.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    /// Numbers and booleans as text, the way Ruby's `to_s` would render them;
    /// null has no text.
    fn text(self) -> Option<String> {
        match self {
            Scalar::Null => None,
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Str(s) => Some(s.to_string()),
        }
    }

    fn describe(self) -> String {
        match self {
            Scalar::Null => "null".to_string(),
            Scalar::Bool(b) => format!("the boolean {b}"),
            Scalar::Int(i) => format!("the number {i}"),
            Scalar::Float(f) => format!("the number {f}"),
            Scalar::Str(s) => format!("the string \"{}\"", escaped(s)),
        }
    }
}

/// A value that is read from one YAML scalar and validated on the spot.
trait FromScalar: Sized {
    const EXPECTING: &'static str;
    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String>;
}

/// Deserializes a [`FromScalar`] inside the scalar's own visitor, which is what
/// makes serde_norway attach that scalar's line and key path to our errors.
struct Field<T>(T);

impl<'de, T: FromScalar> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ScalarVisitor(PhantomData))
            .map(Field)
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<T: FromScalar> ScalarVisitor<T> {
    fn accept<E: de::Error>(scalar: Scalar<'_>) -> Result<T, E> {
        T::from_scalar(scalar).map_err(E::custom)
    }
}

impl<'de, T: FromScalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Self::accept(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Self::accept(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Self::accept(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::accept(Scalar::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::accept(Scalar::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<T, E> {
        Self::accept(Scalar::Int(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Self::accept(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Self::accept(Scalar::Str(v))
    }
}

/// A YAML sequence; null (or an absent value) means empty.
struct List<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_unit<E: de::Error>(self) -> Result<List<T>, E> {
        Ok(List(Vec::new()))
    }

    fn visit_none<E: de::Error>(self) -> Result<List<T>, E> {
        Ok(List(Vec::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List(items))
    }
}

impl FromScalar for Option<AppSpecVersion> {
    const EXPECTING: &'static str = "the number 0.0";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
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

/// Any scalar as text (Ruby's `to_s`); null is absent.
struct Text(Option<String>);

impl FromScalar for Text {
    const EXPECTING: &'static str = "a string";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        Ok(Text(scalar.text()))
    }
}

// ---- files -------------------------------------------------------------------

struct Source(Option<RevisionPath>);

impl FromScalar for Source {
    const EXPECTING: &'static str = "a path inside the revision";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let Some(written) = scalar.text() else {
            return Ok(Source(None));
        };
        check_path(&written)?;
        RevisionPath::parse(&written)
            .map(|p| Source(Some(p)))
            .ok_or_else(|| {
                format!(
                    "'{}' climbs out of the revision with '..'",
                    escaped(&written)
                )
            })
    }
}

struct Destination(Option<PathBuf>);

impl FromScalar for Destination {
    const EXPECTING: &'static str = "an absolute path";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let Some(written) = scalar.text() else {
            return Ok(Destination(None));
        };
        check_path(&written)?;
        normalize_host_path(&written)
            .map(|p| Destination(Some(p)))
            .ok_or_else(|| format!("'{}' must be an absolute path", escaped(&written)))
    }
}

impl<'de> Deserialize<'de> for FileMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FileMappingVisitor)
    }
}

struct FileMappingVisitor;

impl<'de> Visitor<'de> for FileMappingVisitor {
    type Value = FileMapping;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with source and destination")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileMapping, A::Error> {
        let mut source = None;
        let mut destination = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "source" => source = map.next_value::<Field<Source>>()?.0 .0,
                "destination" => destination = map.next_value::<Field<Destination>>()?.0 .0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (source, destination) {
            (Some(source), Some(destination)) => Ok(FileMapping {
                source,
                destination,
            }),
            (None, _) => Err(de::Error::custom(
                "this files entry has no source; give the path inside the revision to copy",
            )),
            (Some(source), None) => Err(de::Error::custom(format!(
                "this files entry copies source '{source}' but has no destination"
            ))),
        }
    }
}

// ---- hooks -------------------------------------------------------------------

struct HooksSection {
    hooks: Vec<EventHooks>,
    warnings: Vec<String>,
}

impl<'de> Deserialize<'de> for HooksSection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HooksVisitor)
    }
}

struct HooksVisitor;

impl<'de> Visitor<'de> for HooksVisitor {
    type Value = HooksSection;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping from lifecycle event names to lists of scripts")
    }

    fn visit_unit<E: de::Error>(self) -> Result<HooksSection, E> {
        Ok(HooksSection {
            hooks: Vec::new(),
            warnings: Vec::new(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HooksSection, A::Error> {
        let mut hooks: Vec<EventHooks> = Vec::new();
        let mut warnings = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let scripts = map.next_value::<List<HookScript>>()?.0;
            let event = LifecycleEvent::from_name(&name);
            if let LifecycleEvent::Custom(_) = event {
                warnings.push(format!(
                    "hooks: '{name}' is not a standard lifecycle event; it runs only when the deployment lists it as a custom event"
                ));
            }
            // Written twice: the last counts (`duplicate_keys` warns).
            if let Some(index) = hooks.iter().position(|h| h.event == event) {
                hooks.remove(index);
            }
            // An event with a null or empty list has no scripts, but it is still
            // named (the AllPossibleLifecycleEvents check counts it).
            hooks.push(EventHooks { event, scripts });
        }
        Ok(HooksSection { hooks, warnings })
    }
}

struct Location(Option<String>);

impl FromScalar for Location {
    const EXPECTING: &'static str = "a script path inside the revision";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let Some(written) = scalar.text() else {
            return Ok(Location(None));
        };
        let location = written.trim();
        check_path(location)?;
        match RevisionPath::parse(location) {
            _ if location.is_empty() => Err("is empty; give the script's path inside the revision".to_string()),
            None => Err(format!(
                "'{}' climbs out of the revision with '..'; hooks run only scripts inside the revision", escaped(location)
            )),
            Some(path) if path.is_root() => Err(format!(
                "'{}' names the revision root, not a script", escaped(location)
            )),
            Some(_) => Ok(Location(Some(location.to_string()))),
        }
    }
}

struct Timeout(Duration);

impl FromScalar for Timeout {
    const EXPECTING: &'static str = "a positive number of seconds";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        // Ruby's `to_i` truncates fractions and reads numeric strings.
        let seconds: Option<i128> = match scalar {
            Scalar::Null => return Ok(Timeout(HookScript::DEFAULT_TIMEOUT)),
            Scalar::Int(i) => Some(i),
            Scalar::Float(f) if f.is_finite() => Some(f.trunc() as i128),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        let max = HookScript::MAX_TIMEOUT.as_secs();
        match seconds {
            Some(s) if s > i128::from(max) => Err(format!(
                "{} is above the longest timeout this agent accepts, {max} seconds (24 hours, \
                 its limit for one command); give at most that (the service documents one hour, \
                 3600 seconds, for each lifecycle event's scripts)",
                scalar.describe()
            )),
            // In 1..=max here: the cast cannot truncate.
            Some(s) if s > 0 => Ok(Timeout(Duration::from_secs(s as u64))),
            _ => Err(format!(
                "{} is not valid; it must be a whole number of seconds greater than 0",
                scalar.describe()
            )),
        }
    }
}

struct RunAs(Option<String>);

impl FromScalar for RunAs {
    const EXPECTING: &'static str = "a user name";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let Some(written) = scalar.text() else {
            return Ok(RunAs(None));
        };
        let user = written.trim();
        // The name becomes an argument of `su`: it must not read as an option.
        let valid = !user.is_empty()
            && !user.starts_with('-')
            && !user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '/');
        if valid {
            Ok(RunAs(Some(user.to_string())))
        } else {
            Err(format!("'{user}' is not a valid user name"))
        }
    }
}

struct Sudo(bool);

impl FromScalar for Sudo {
    const EXPECTING: &'static str = "true or false";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        match scalar {
            Scalar::Null => Ok(Sudo(false)),
            Scalar::Bool(b) => Ok(Sudo(b)),
            other => Err(format!(
                "{} is not valid; use true or false",
                other.describe()
            )),
        }
    }
}

impl<'de> Deserialize<'de> for HookScript {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HookScriptVisitor)
    }
}

struct HookScriptVisitor;

impl<'de> Visitor<'de> for HookScriptVisitor {
    type Value = HookScript;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with location and optionally timeout, runas, sudo")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HookScript, A::Error> {
        let mut location = None;
        let mut timeout = HookScript::DEFAULT_TIMEOUT;
        let mut runas = None;
        let mut sudo = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "location" => location = map.next_value::<Field<Location>>()?.0 .0,
                "timeout" => timeout = map.next_value::<Field<Timeout>>()?.0 .0,
                "runas" => runas = map.next_value::<Field<RunAs>>()?.0 .0,
                "sudo" => sudo = map.next_value::<Field<Sudo>>()?.0 .0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let location = location.ok_or_else(|| {
            de::Error::custom("this script has no location; give its path inside the revision")
        })?;
        Ok(HookScript {
            location,
            timeout,
            runas,
            sudo,
        })
    }
}

// ---- permissions -------------------------------------------------------------

struct PermissionEntry {
    permission: Permission,
    warnings: Vec<String>,
}

struct Object(Option<PathBuf>);

impl FromScalar for Object {
    const EXPECTING: &'static str = "an absolute path";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let Some(written) = scalar.text() else {
            return Ok(Object(None));
        };
        let object = written.trim();
        if object.is_empty() {
            return Ok(Object(None));
        }
        check_path(object)?;
        normalize_host_path(object)
            .map(|p| Object(Some(p)))
            .ok_or_else(|| format!("'{}' must be an absolute path", escaped(object)))
    }
}

impl FromScalar for Glob {
    const EXPECTING: &'static str = "a pattern";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        scalar
            .text()
            .map(Glob::new)
            .ok_or_else(|| "a pattern cannot be null".to_string())
    }
}

struct KindName(String);

impl FromScalar for KindName {
    const EXPECTING: &'static str = "file or directory";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let name = scalar.text().unwrap_or_default();
        ObjectKinds::from_names([name.as_str()])?;
        Ok(KindName(name))
    }
}

/// A mode and, when its digits start with 0, the warning that the official agent
/// would have read an unquoted value as an octal number.
struct ModeField(Option<(Mode, Option<String>)>);

impl FromScalar for ModeField {
    const EXPECTING: &'static str = "one to four octal digits";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        let digits = match scalar {
            Scalar::Null => return Ok(ModeField(None)),
            Scalar::Int(i) => i.to_string(),
            Scalar::Str(s) => s.trim().to_string(),
            other => {
                return Err(format!(
                    "{} is not valid; write octal digits such as 644",
                    other.describe()
                ))
            }
        };
        let mode = Mode::parse(&digits)?;
        let warning = (digits.len() > 1 && digits.starts_with('0')).then(|| {
            let octal = u32::from_str_radix(&digits, 8).unwrap_or_default();
            format!(
                "mode {digits} is applied as {mode}; the official agent reads it, when unquoted, as the octal number {octal} and applies mode {octal} instead: write {} to mean the same on both agents",
                digits.trim_start_matches('0')
            )
        });
        Ok(ModeField(Some((mode, warning))))
    }
}

impl FromScalar for AclEntry {
    const EXPECTING: &'static str = "an acl entry such as u:alice:rw";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        AclEntry::parse(&scalar.text().unwrap_or_default())
    }
}

impl FromScalar for SeLinuxRange {
    const EXPECTING: &'static str = "an SELinux range such as s0 or s0:c0.c3";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        SeLinuxRange::parse(&scalar.text().unwrap_or_default())
    }
}

struct ContextEntry {
    context: SeLinuxContext,
    ignored_role: Option<String>,
}

impl<'de> Deserialize<'de> for ContextEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ContextVisitor)
    }
}

struct ContextVisitor;

impl<'de> Visitor<'de> for ContextVisitor {
    type Value = ContextEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with type and optionally name and range")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContextEntry, A::Error> {
        let mut user = None;
        let mut type_ = None;
        let mut range = None;
        let mut ignored_role = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => user = map.next_value::<Field<Text>>()?.0 .0,
                "type" => type_ = map.next_value::<Field<Text>>()?.0 .0,
                "range" => range = Some(map.next_value::<Field<SeLinuxRange>>()?.0),
                "role" => ignored_role = map.next_value::<Field<Text>>()?.0 .0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let type_ = type_.filter(|t| !t.is_empty()).ok_or_else(|| {
            de::Error::custom("this context has no type; SELinux contexts need one")
        })?;
        Ok(ContextEntry {
            context: SeLinuxContext { user, type_, range },
            ignored_role,
        })
    }
}

impl<'de> Deserialize<'de> for PermissionEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PermissionVisitor)
    }
}

struct PermissionVisitor;

impl<'de> Visitor<'de> for PermissionVisitor {
    type Value = PermissionEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with object and the permissions to set")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PermissionEntry, A::Error> {
        let mut object = None;
        let mut pattern = None;
        let mut except = Vec::new();
        let mut kinds = ObjectKinds::BOTH;
        let mut owner = None;
        let mut group = None;
        let mut mode = None;
        let mut acls = Vec::new();
        let mut context = None;
        let mut warnings = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "object" => object = map.next_value::<Field<Object>>()?.0 .0,
                "pattern" => pattern = map.next_value::<Field<Option<Glob>>>()?.0,
                "except" => {
                    except = map
                        .next_value::<List<Field<Glob>>>()?
                        .0
                        .into_iter()
                        .map(|g| g.0)
                        .collect()
                }
                "type" => {
                    // A null list means the default (both kinds), as in Ruby.
                    let names = map.next_value::<Option<List<Field<KindName>>>>()?;
                    if let Some(List(names)) = names {
                        kinds = ObjectKinds::from_names(names.iter().map(|n| n.0 .0.as_str()))
                            .map_err(de::Error::custom)?;
                    }
                }
                "owner" => owner = map.next_value::<Field<Text>>()?.0 .0,
                "group" => group = map.next_value::<Field<Text>>()?.0 .0,
                "mode" => {
                    if let Some((parsed, warning)) = map.next_value::<Field<ModeField>>()?.0 .0 {
                        mode = Some(parsed);
                        warnings.extend(warning);
                    }
                }
                "acls" => {
                    acls = map
                        .next_value::<List<Field<AclEntry>>>()?
                        .0
                        .into_iter()
                        .map(|a| a.0)
                        .collect()
                }
                "context" => {
                    if let Some(entry) = map.next_value::<Option<ContextEntry>>()? {
                        if let Some(role) = entry.ignored_role {
                            warnings.push(format!(
                                "context role '{role}' is ignored (as by the official agent)"
                            ));
                        }
                        context = Some(entry.context);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let object = object.ok_or_else(|| {
            de::Error::custom("this permission has no object; give the absolute path it applies to")
        })?;
        let warnings = warnings
            .into_iter()
            .map(|w| format!("permissions for {}: {w}", object.display()))
            .collect();
        Ok(PermissionEntry {
            permission: Permission {
                object,
                pattern: pattern.unwrap_or_else(Glob::everything),
                except,
                kinds,
                owner,
                group,
                mode,
                acls,
                context,
            },
            warnings,
        })
    }
}

impl FromScalar for Option<Glob> {
    const EXPECTING: &'static str = "a pattern";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, String> {
        Ok(scalar.text().map(Glob::new))
    }
}
