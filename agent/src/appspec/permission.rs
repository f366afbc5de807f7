//! The `permissions` section's typed values: modes, ACL entries, SELinux contexts
//! and ranges, the simple glob of `pattern`/`except`, and which objects a
//! permission reaches. Pure parsing and matching from strings; what to apply to
//! which installed path is decided by the install planner.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::Problem;

/// One entry of `permissions`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Normalised absolute path.
    pub object: PathBuf,
    pub pattern: Glob,
    pub except: Vec<Glob>,
    pub kinds: ObjectKinds,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<Mode>,
    /// Empty when `acls` is absent.
    pub acls: Vec<AclEntry>,
    pub context: Option<SeLinuxContext>,
}

impl Permission {
    /// Does this permission, given on a directory `object`, reach `path`? Only
    /// paths strictly below `object`; with pattern `**` at any depth, otherwise
    /// only direct children whose name matches `pattern` and no `except`.
    pub fn reaches_below(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.object) else {
            return false;
        };
        let Some(relative) = relative.to_str() else {
            // A non-UTF-8 name can only match the match-everything pattern.
            return self.pattern.is_everything() && !relative.as_os_str().is_empty();
        };
        if relative.is_empty() {
            return false;
        }
        let included = self.pattern.is_everything() || self.pattern.matches_name(relative);
        included && !self.except.iter().any(|e| e.matches_name(relative))
    }

    /// A default (`d:`) ACL entry cannot be set on a file.
    pub fn has_default_acl(&self) -> bool {
        self.acls.iter().any(|a| a.default)
    }
}

/// Which kinds of installed object a permission applies to (`type:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKinds {
    pub files: bool,
    pub directories: bool,
}

impl ObjectKinds {
    pub const BOTH: ObjectKinds = ObjectKinds {
        files: true,
        directories: true,
    };

    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<ObjectKinds, Problem> {
        let mut kinds = ObjectKinds {
            files: false,
            directories: false,
        };
        for name in names {
            match name {
                "file" => kinds.files = true,
                "directory" => kinds.directories = true,
                other => {
                    return Err(format!(
                        "permission type '{other}' is not supported; use file and/or directory"
                    ))
                }
            }
        }
        Ok(kinds)
    }
}

/// The simple glob of `pattern` and `except`: `*` matches any run of characters
/// within one name, every other character matches itself. `**` as a whole
/// pattern means "everything below, at any depth".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Glob {
        Glob(pattern.into())
    }

    pub fn everything() -> Glob {
        Glob("**".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_everything(&self) -> bool {
        self.0 == "**"
    }

    /// Matches one path name (a name containing `/` never matches). Greedy
    /// matching with one backtrack point: linear in practice, no regex, no
    /// exponential blow-up on hostile patterns.
    pub fn matches_name(&self, name: &str) -> bool {
        if name.contains('/') {
            return false;
        }
        let pattern: Vec<char> = self.0.chars().collect();
        let name: Vec<char> = name.chars().collect();
        let (mut p, mut n) = (0, 0);
        let mut last_star: Option<(usize, usize)> = None;
        while n < name.len() {
            if p < pattern.len() && pattern[p] == '*' {
                last_star = Some((p, n));
                p += 1;
            } else if p < pattern.len() && pattern[p] == name[n] {
                p += 1;
                n += 1;
            } else if let Some((star_p, star_n)) = last_star {
                // Let the last star swallow one more character and retry.
                p = star_p + 1;
                n = star_n + 1;
                last_star = Some((star_p, star_n + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|c| *c == '*')
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file mode from `mode:`: 1–4 octal digits as the author wrote them, shorter
/// values left-padded to three digits; the fourth digit carries setuid, setgid
/// and sticky.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(u32);

impl Mode {
    pub fn parse(digits: &str) -> Result<Mode, Problem> {
        if digits.is_empty() || digits.len() > 4 {
            return Err(format!(
                "mode '{digits}' must be one to four octal digits (e.g. 644 or 4755)"
            ));
        }
        let mut bits = 0;
        for c in digits.chars() {
            let digit = c.to_digit(8).ok_or_else(|| {
                format!("mode '{digits}' contains '{c}', which is not an octal digit (0-7)")
            })?;
            bits = bits * 8 + digit;
        }
        Ok(Mode(bits))
    }

    pub fn from_bits(bits: u32) -> Mode {
        Mode(bits & 0o7777)
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Mode {
    /// Three digits, or four when a special bit is set (`0644`, `4755`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 > 0o777 {
            write!(f, "{:04o}", self.0)
        } else {
            write!(f, "{:03o}", self.0)
        }
    }
}

/// The ACL entry kinds of `setfacl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclKind {
    User,
    Group,
    Mask,
    Other,
}

impl AclKind {
    fn from_tag(tag: &str) -> Option<AclKind> {
        match tag {
            "u" | "user" => Some(AclKind::User),
            "g" | "group" => Some(AclKind::Group),
            "m" | "mask" => Some(AclKind::Mask),
            "o" | "other" => Some(AclKind::Other),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AclKind::User => "user",
            AclKind::Group => "group",
            AclKind::Mask => "mask",
            AclKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclPerms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl AclPerms {
    /// `rwx` letters in any order (`-` allowed as a placeholder) or one octal digit.
    fn parse(text: &str) -> Result<AclPerms, Problem> {
        if let Some(digit) = single_octal_digit(text) {
            return Ok(AclPerms {
                read: digit & 4 != 0,
                write: digit & 2 != 0,
                execute: digit & 1 != 0,
            });
        }
        let mut perms = AclPerms {
            read: false,
            write: false,
            execute: false,
        };
        for c in text.chars() {
            match c {
                'r' => perms.read = true,
                'w' => perms.write = true,
                'x' => perms.execute = true,
                '-' => {}
                other => {
                    return Err(format!(
                        "'{other}' is not a permission (use r, w, x, - or one octal digit)"
                    ))
                }
            }
        }
        Ok(perms)
    }
}

fn single_octal_digit(text: &str) -> Option<u32> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => c.to_digit(8),
        _ => None,
    }
}

impl fmt::Display for AclPerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            flag(self.read, 'r'),
            flag(self.write, 'w'),
            flag(self.execute, 'x')
        )
    }
}

/// One entry of `acls`: `[d:]type:name:perms`, where a missing type means user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub default: bool,
    pub kind: AclKind,
    /// Empty for mask, other and default base entries.
    pub name: String,
    pub perms: AclPerms,
}

impl AclEntry {
    /// Accepted forms (`d` may be spelt `default`, types `u`/`user` etc.):
    /// `name:perms`, `type:name:perms`, `d:name:perms`, `d:type:name:perms`, and
    /// `m:perms` / `d:o:perms` style entries for mask and other. Base entries
    /// (user, group or other without a name, not default) are refused: the
    /// `mode` sets those.
    pub fn parse(entry: &str) -> Result<AclEntry, Problem> {
        let invalid = |why: &str| format!("acl entry '{entry}' is invalid: {why}");
        let parts: Vec<&str> = entry.split(':').collect();
        let (prefix, qualifier, perms) = match parts.as_slice() {
            [prefix @ .., qualifier, perms] if prefix.len() <= 2 => (prefix, *qualifier, *perms),
            _ => return Err(invalid("expected [d:][type:]name:perms")),
        };
        let kind_of = |tag: &str| {
            AclKind::from_tag(tag)
                .ok_or_else(|| invalid(&format!("'{tag}' is not an acl type (u, g, m, o)")))
        };
        // With three parts the first is either the default flag or the type.
        let (default, kind) = match prefix {
            [] => (false, None),
            [first] if is_default_tag(first) => (true, None),
            [first] => (false, Some(kind_of(first)?)),
            [first, kind] if is_default_tag(first) => (true, Some(kind_of(kind)?)),
            _ => return Err(invalid("a four-part entry must start with d: or default:")),
        };
        // Without an explicit type, `m` and `o` in the qualifier's place name the
        // mask and other entries; anything else is a user name.
        let (kind, name) = match kind {
            Some(kind) => (kind, qualifier.to_string()),
            None => match AclKind::from_tag(qualifier) {
                Some(AclKind::Mask) => (AclKind::Mask, String::new()),
                Some(AclKind::Other) => (AclKind::Other, String::new()),
                _ => (AclKind::User, qualifier.to_string()),
            },
        };
        if matches!(kind, AclKind::Mask | AclKind::Other) && !name.is_empty() {
            return Err(invalid(&format!("a {} entry takes no name", kind.name())));
        }
        if !default && kind != AclKind::Mask && name.is_empty() {
            return Err(invalid(
                "base entries (user, group or other without a name) are set with mode, not acls",
            ));
        }
        let perms = AclPerms::parse(perms).map_err(|why| invalid(&why))?;
        Ok(AclEntry {
            default,
            kind,
            name,
            perms,
        })
    }
}

fn is_default_tag(tag: &str) -> bool {
    tag == "d" || tag == "default"
}

impl fmt::Display for AclEntry {
    /// The `setfacl` spelling: `[default:]type:name:rwx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.default {
            f.write_str("default:")?;
        }
        write!(f, "{}:{}:{}", self.kind.name(), self.name, self.perms)
    }
}

/// `context:`: an SELinux file context for `semanage fcontext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeLinuxContext {
    /// The SELinux user (`name:`).
    pub user: Option<String>,
    pub type_: String,
    pub range: Option<SeLinuxRange>,
}

/// An MLS/MCS range: `s<low>[-s<high>][:c<n>[.c<m>](,c<n>[.c<m>])*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeLinuxRange {
    pub low: u32,
    pub high: u32,
    /// Sorted, without duplicates; `None` when the range names no categories.
    pub categories: Option<Vec<u16>>,
}

const MAX_CATEGORY: u16 = 1023;

impl SeLinuxRange {
    pub fn parse(text: &str) -> Result<SeLinuxRange, Problem> {
        let invalid = |why: String| format!("SELinux range '{text}' is invalid: {why}");
        let (sensitivities, categories) = split_once_nonempty(text, ':').map_err(invalid)?;
        let (low, high) = split_once_nonempty(sensitivities, '-').map_err(invalid)?;
        let low = level(low, 's', u32::MAX).map_err(invalid)?;
        let high = match high {
            Some(high) => level(high, 's', u32::MAX).map_err(invalid)?,
            None => low,
        };
        if high < low {
            return Err(invalid(format!("s{high} is below s{low}")));
        }
        let categories = match categories {
            None => None,
            Some(list) => Some(category_list(list).map_err(invalid)?),
        };
        Ok(SeLinuxRange {
            low,
            high,
            categories,
        })
    }
}

/// `a<sep>b` → (a, Some(b)), `a` → (a, None); empty halves are errors.
fn split_once_nonempty(text: &str, separator: char) -> Result<(&str, Option<&str>), Problem> {
    let (head, tail) = match text.split_once(separator) {
        Some((head, tail)) => (head, Some(tail)),
        None => (text, None),
    };
    if head.is_empty() || tail.is_some_and(str::is_empty) {
        return Err(format!("'{text}' has an empty part around '{separator}'"));
    }
    Ok((head, tail))
}

/// `s<digits>` or `c<digits>`, at most `max`.
fn level(text: &str, prefix: char, max: u32) -> Result<u32, Problem> {
    let digits = text
        .strip_prefix(prefix)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("'{text}' is not {prefix} followed by a number"))?;
    digits
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("'{text}' is out of range"))
}

fn category_list(list: &str) -> Result<Vec<u16>, Problem> {
    let mut categories = Vec::new();
    for item in list.split(',') {
        let (low, high) = split_once_nonempty(item, '.')?;
        let low = category(low)?;
        let high = match high {
            Some(high) => category(high)?,
            None => low,
        };
        if high < low {
            return Err(format!("category range '{item}' runs backwards"));
        }
        categories.extend(low..=high);
    }
    let count = categories.len();
    categories.sort_unstable();
    categories.dedup();
    if categories.len() != count {
        return Err("a category is listed twice".to_string());
    }
    Ok(categories)
}

fn category(text: &str) -> Result<u16, Problem> {
    let n = level(text, 'c', u32::from(MAX_CATEGORY))?;
    Ok(u16::try_from(n).expect("level() bounded the value by MAX_CATEGORY"))
}

impl fmt::Display for SeLinuxRange {
    /// The canonical form: consecutive categories folded into `cN.cM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.low)?;
        if self.high != self.low {
            write!(f, "-s{}", self.high)?;
        }
        if let Some(categories) = &self.categories {
            f.write_str(":")?;
            let mut i = 0;
            let mut first = true;
            while i < categories.len() {
                let start = categories[i];
                let mut end = start;
                while i + 1 < categories.len() && categories[i + 1] == end + 1 {
                    end += 1;
                    i += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                if start == end {
                    write!(f, "c{start}")?;
                } else {
                    write!(f, "c{start}.c{end}")?;
                }
                i += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
