//! Reading one YAML value so that serde_norway stamps our errors with its key
//! path and line: a scalar is checked inside its own visitor ([`Field`]), a
//! list element by element ([`List`]). Every appspec value type implements
//! [`FromScalar`], whose error is a [`Problem`] for the appspec's author.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use crate::appspec::error::Problem;
use crate::names::escaped;

/// One YAML scalar, typed as the YAML parser typed it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Scalar<'_> {
    /// Numbers and booleans as text, the way Ruby's `to_s` would render them;
    /// null has no text.
    pub(super) fn text(self) -> Option<String> {
        match self {
            Scalar::Null => None,
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            Scalar::Str(s) => Some(s.to_string()),
        }
    }

    pub(super) fn describe(self) -> String {
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
pub(super) trait FromScalar: Sized {
    const EXPECTING: &'static str;
    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem>;
}

/// Deserializes a [`FromScalar`] inside the scalar's own visitor, which is what
/// makes serde_norway attach that scalar's line and key path to our errors.
pub(super) struct Field<T>(pub(super) T);

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
pub(super) struct List<T>(pub(super) Vec<T>);

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
/// Any scalar as text (Ruby's `to_s`); null is absent.
pub(super) struct Text(pub(super) Option<String>);

impl FromScalar for Text {
    const EXPECTING: &'static str = "a string";

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
        Ok(Text(scalar.text()))
    }
}
