//! The `hooks:` section: lifecycle event names to lists of scripts, each with
//! its `location` inside the revision, `timeout`, `runas` and `sudo`. A script
//! never runs from outside the revision, and a `runas` name can never read as
//! an option of `su`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::check_path;
use super::node::{Field, FromScalar, List, Scalar};
use crate::appspec::error::Problem;
use crate::appspec::model::{EventHooks, HookScript};
use crate::appspec::paths::RevisionPath;
use crate::event::LifecycleEvent;
use crate::names::escaped;

pub(super) struct HooksSection {
    pub(super) hooks: Vec<EventHooks>,
    pub(super) warnings: Vec<String>,
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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

    fn from_scalar(scalar: Scalar<'_>) -> Result<Self, Problem> {
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
