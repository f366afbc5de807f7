//! The parts of an appspec that `validate` checks against the bundle and the
//! host (hook scripts, runas users, file sources, permission owners), read
//! leniently from the YAML so that they are checked even when the strict
//! parser stops at a grammar error elsewhere in the file, and the line each
//! one is written on. Pure: text in, values out.

use serde_norway::Value;

/// One hook script as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRef {
    pub event: String,
    pub location: String,
    pub runas: Option<String>,
    pub sudo: bool,
    pub line: Option<usize>,
}

/// A value of the appspec and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub value: String,
    pub line: Option<usize>,
}

/// Everything `validate` looks up on disk or on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skeleton {
    pub scripts: Vec<ScriptRef>,
    pub sources: Vec<Located>,
    /// `runas` users, with the line of their `runas:`.
    pub runas: Vec<Located>,
    pub owners: Vec<Located>,
    pub groups: Vec<Located>,
}

/// Reads what it can; malformed parts are the strict parser's to report.
pub fn skeleton(text: &str) -> Skeleton {
    let Ok(Value::Mapping(top)) = serde_norway::from_str::<Value>(text) else {
        return Skeleton::default();
    };
    let mut lines = LineFinder::new(text);
    let mut skeleton = Skeleton::default();
    if let Some(Value::Mapping(hooks)) = top.get("hooks") {
        for (event, scripts) in hooks {
            let (Some(event), Value::Sequence(scripts)) = (scalar(event), scripts) else {
                continue;
            };
            for script in scripts {
                let Some(location) = script.get("location").and_then(scalar) else {
                    continue;
                };
                let location = location.trim().to_string();
                let line = lines.find("location", &location);
                let runas = script
                    .get("runas")
                    .and_then(scalar)
                    .map(|u| u.trim().to_string());
                if let Some(user) = &runas {
                    skeleton.runas.push(Located {
                        value: user.clone(),
                        line: lines.find("runas", user),
                    });
                }
                skeleton.scripts.push(ScriptRef {
                    event: event.clone(),
                    location,
                    runas,
                    sudo: script.get("sudo").and_then(Value::as_bool).unwrap_or(false),
                    line,
                });
            }
        }
    }
    if let Some(Value::Sequence(files)) = top.get("files") {
        for entry in files {
            if let Some(source) = entry.get("source").and_then(scalar) {
                let line = lines.find("source", &source);
                skeleton.sources.push(Located {
                    value: source,
                    line,
                });
            }
        }
    }
    if let Some(Value::Sequence(permissions)) = top.get("permissions") {
        for entry in permissions {
            for (key, list) in [
                ("owner", &mut skeleton.owners),
                ("group", &mut skeleton.groups),
            ] {
                if let Some(name) = entry.get(key).and_then(scalar) {
                    let name = name.trim().to_string();
                    let line = lines.find(key, &name);
                    list.push(Located { value: name, line });
                }
            }
        }
    }
    skeleton
}

/// A scalar as text (numbers and booleans too, as YAML wrote them).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Finds the line of `key: value`, each line at most once, in document
/// order, so that a value written twice gets its two lines.
struct LineFinder<'a> {
    lines: Vec<&'a str>,
    used: Vec<bool>,
}

impl<'a> LineFinder<'a> {
    fn new(text: &'a str) -> LineFinder<'a> {
        let lines: Vec<&str> = text.lines().collect();
        let used = vec![false; lines.len()];
        LineFinder { lines, used }
    }

    /// 1-based.
    fn find(&mut self, key: &str, value: &str) -> Option<usize> {
        let index = (0..self.lines.len()).find(|&i| {
            !self.used[i] && key_value(self.lines[i]).is_some_and(|(k, v)| k == key && v == value)
        })?;
        self.used[index] = true;
        Some(index + 1)
    }
}

/// `  - key: "value"  # comment` → `("key", "value")`.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let mut rest = line.trim_start();
    while let Some(after) = rest.strip_prefix('-') {
        rest = after.trim_start();
    }
    let (key, value) = rest.split_once(':')?;
    let value = match value.find(" #") {
        Some(comment) => &value[..comment],
        None => value,
    }
    .trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value)
        .trim();
    Some((key.trim(), unquoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPSPEC: &str = "\
version: 0.0
os: linux
files:
  - source: content
    destination: /srv/app
  - source: \"config/app.conf\"
    destination: /etc/app
permissions:
  - object: /srv/app
    owner: www-data
    group: web   # the web group
hooks:
  BeforeInstall:
    - location: scripts/stop.sh
      runas: deploy
  ApplicationStart:
    - location: scripts/start.sh
      timeout: 60
      sudo: true
  ValidateService:
    - location: scripts/stop.sh
";

    fn located(value: &str, line: usize) -> Located {
        Located {
            value: value.into(),
            line: Some(line),
        }
    }

    #[test]
    fn every_checked_value_comes_with_its_line() {
        let s = skeleton(APPSPEC);
        assert_eq!(
            s.scripts,
            vec![
                ScriptRef {
                    event: "BeforeInstall".into(),
                    location: "scripts/stop.sh".into(),
                    runas: Some("deploy".into()),
                    sudo: false,
                    line: Some(14),
                },
                ScriptRef {
                    event: "ApplicationStart".into(),
                    location: "scripts/start.sh".into(),
                    runas: None,
                    sudo: true,
                    line: Some(17),
                },
                ScriptRef {
                    event: "ValidateService".into(),
                    location: "scripts/stop.sh".into(),
                    runas: None,
                    sudo: false,
                    line: Some(21),
                },
            ]
        );
        assert_eq!(
            s.sources,
            vec![located("content", 4), located("config/app.conf", 6)]
        );
        assert_eq!(s.runas, vec![located("deploy", 15)]);
        assert_eq!(s.owners, vec![located("www-data", 10)]);
        assert_eq!(s.groups, vec![located("web", 11)]);
    }

    #[test]
    fn a_grammar_error_elsewhere_does_not_hide_the_scripts() {
        let text = "version: \"0.0\"\nos: linux\nhooks:\n  AfterInstall:\n    - location: a.sh\n      timeout: -1\n";
        let s = skeleton(text);
        assert_eq!(s.scripts.len(), 1);
        assert_eq!(s.scripts[0].line, Some(5));
    }

    #[test]
    fn broken_yaml_gives_nothing() {
        assert_eq!(skeleton("hooks: [unclosed"), Skeleton::default());
        assert_eq!(skeleton(""), Skeleton::default());
    }

    #[test]
    fn key_value_lines() {
        let cases = [
            ("  - location: a.sh", Some(("location", "a.sh"))),
            ("    runas: 'deploy'", Some(("runas", "deploy"))),
            ("source: \"x y\" # note", Some(("source", "x y"))),
            ("just text", None),
        ];
        for (line, expected) in cases {
            assert_eq!(key_value(line), expected, "{line:?}");
        }
    }
}
