//! The `permissions:` section read from YAML: each entry's `object`,
//! `pattern`, `except`, `type`, `owner`, `group`, `mode`, `acls` and `context`,
//! with the warnings an entry earns (an octal-looking mode, an ignored SELinux
//! role). The values' own grammar (modes, ACL entries, SELinux ranges) is
//! [`crate::appspec::permission`]'s.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::check_path;
use super::node::{Field, FromScalar, List, Scalar, Text};
use crate::appspec::error::Problem;
use crate::appspec::paths::normalize_host_path;
use crate::appspec::permission::{
    AclEntry, Glob, Mode, ObjectKinds, Permission, SeLinuxContext, SeLinuxRange,
};
use crate::names::escaped;

pub(super) struct PermissionEntry {
    pub(super) permission: Permission,
    pub(super) warnings: Vec<String>,
}

struct Object(Option<PathBuf>);

impl FromScalar for Object {
    const EXPECTING: &'static str = "an absolute path";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        scalar
            .text()
            .map(Glob::new)
            .ok_or_else(|| "a pattern cannot be null".to_string())
    }
}

struct KindName(String);

impl FromScalar for KindName {
    const EXPECTING: &'static str = "file or directory";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        AclEntry::parse(&scalar.text().unwrap_or_default())
    }
}

impl FromScalar for SeLinuxRange {
    const EXPECTING: &'static str = "an SELinux range such as s0 or s0:c0.c3";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        Ok(scalar.text().map(Glob::new))
    }
}
