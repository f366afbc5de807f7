//! The warning for a key written twice in one mapping. Ruby's Psych, the
//! official agent's YAML parser, silently keeps the last; so does serde_norway
//! here, and this walk over the raw YAML says so, naming the key path.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::node::{Field, FromScalar, Scalar};
use crate::appspec::error::Problem;
use crate::names::escaped;

/// A warning for every key written twice in one mapping, at any depth, named
/// by the key path of its mapping (`files[0]: 'destination' ...`). YAML the
/// strict parse refuses ends the walk: its error is reported there.
pub(super) fn duplicate_keys(text: &str) -> Vec<String> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        Ok(KeyName(scalar.text().unwrap_or_else(|| "null".to_string())))
    }
}
