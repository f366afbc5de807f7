//! The `files:` section: each entry's `source` (a path inside the revision)
//! and `destination` (an absolute path on the host).

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::check_path;
use super::node::{Field, FromScalar, Scalar};
use crate::appspec::error::Problem;
use crate::appspec::model::FileMapping;
use crate::appspec::paths::{normalize_host_path, RevisionPath};
use crate::names::escaped;

struct Source(Option<RevisionPath>);

impl FromScalar for Source {
    const EXPECTING: &'static str = "a path inside the revision";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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
