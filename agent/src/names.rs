//! Names a revision provides — archive entry names and link targets, the file
//! names of a directory bundle, the paths of an appspec — which of them are
//! refused, and how every message prints them. Pure: bytes in, verdicts and
//! text out. It sits below the bundle, appspec and install layers so that all
//! of them refuse and print names the same way.
//!
//! Refused: any name holding a control character (U+0000–U+001F, U+007F and
//! the C1 range U+0080–U+009F). A newline would split one created path into two
//! lines of the cleanup file, the second naming any file on the host; NUL, ESC
//! and the rest drive terminals and corrupt logs, and no real file name needs
//! them.
//!
//! Printed: every name in a message goes through [`escaped`], which shows
//! control and invisible formatting characters (bidi overrides, zero-width
//! characters, the byte-order mark) as `\u{..}`, bytes that are not UTF-8 as
//! `\xHH`, and a backslash as `\\`, so that what an operator reads is exactly
//! what the revision holds and never drives the terminal.

use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;

/// A control character found in a revision-provided name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the control character {} at byte {offset} (names in a revision may hold no control characters: U+0000-U+001F, U+007F-U+009F)",
    escaped_char(*.character)
)]
pub struct ControlCharacter {
    pub character: char,
    /// Where it starts, in bytes from the start of the name.
    pub offset: usize,
}

/// Refuses a name holding a control character.
pub fn check(name: impl AsRef<OsStr>) -> Result<(), ControlCharacter> {
    let bytes = name.as_ref().as_bytes();
    let mut offset = 0;
    for chunk in bytes.utf8_chunks() {
        for (at, character) in chunk.valid().char_indices() {
            if character.is_control() {
                return Err(ControlCharacter {
                    character,
                    offset: offset + at,
                });
            }
        }
        offset += chunk.valid().len() + chunk.invalid().len();
    }
    Ok(())
}

/// `name` as a message prints it (see the module's documentation).
pub fn escaped(name: impl AsRef<OsStr>) -> String {
    let mut text = String::new();
    for chunk in name.as_ref().as_bytes().utf8_chunks() {
        for character in chunk.valid().chars() {
            match character {
                '\\' => text.push_str("\\\\"),
                c if needs_escape(c) => text.push_str(&escaped_char(c)),
                c => text.push(c),
            }
        }
        for byte in chunk.invalid() {
            // Writing to a String cannot fail.
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    text
}

/// A [`Display`](fmt::Display) of a path or name through [`escaped`], for
/// error messages.
#[derive(Debug)]
pub struct Escaped<'a>(pub &'a OsStr);

impl<'a> Escaped<'a> {
    pub fn of(name: &'a (impl AsRef<OsStr> + ?Sized)) -> Escaped<'a> {
        Escaped(name.as_ref())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escaped(self.0))
    }
}

/// Control characters, and the formatting characters that are invisible or
/// reorder what surrounds them (Trojan-source style).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}')
}

fn escaped_char(c: char) -> String {
    match c {
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\0' => "\\0".to_string(),
        c => format!("\\u{{{:x}}}", u32::from(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn names_print_escaped() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain/name.txt", "plain/name.txt"),
            (b"with space", "with space"),
            ("caf\u{e9}".as_bytes(), "caf\u{e9}"),
            (b"x\n/etc/shadow", "x\\n/etc/shadow"),
            (b"nul\0here", "nul\\0here"),
            (b"\x1b[2Jclear", "\\u{1b}[2Jclear"),
            (b"tab\there\r", "tab\\there\\r"),
            (b"del\x7f", "del\\u{7f}"),
            ("c1\u{9b}".as_bytes(), "c1\\u{9b}"),
            ("\u{feff}version".as_bytes(), "\\u{feff}version"),
            ("evil\u{202e}txt.sh".as_bytes(), "evil\\u{202e}txt.sh"),
            (b"latin1 \xe9t\xe9", "latin1 \\xe9t\\xe9"),
            (b"back\\slash", "back\\\\slash"),
        ];
        for (name, expected) in cases {
            assert_eq!(escaped(OsStr::from_bytes(name)), *expected, "{name:?}");
        }
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        // The name, and the control character refused with its byte offset.
        type Case<'a> = (&'a [u8], Option<(char, usize)>);
        let cases: &[Case] = &[
            (b"app/index.html", None),
            ("r\u{e9}sum\u{e9} \u{202e}.txt".as_bytes(), None),
            (b"\xff\xfe not utf-8", None),
            (b"x\n/etc/shadow", Some(('\n', 1))),
            (b"\0", Some(('\0', 0))),
            (b"a/b\x1b", Some(('\x1b', 3))),
            (b"\xffa\x7f", Some(('\x7f', 2))),
            ("\u{e9}\u{85}".as_bytes(), Some(('\u{85}', 2))),
            (b"tab\tname", Some(('\t', 3))),
        ];
        for (name, expected) in cases {
            let verdict = check(OsStr::from_bytes(name)).err();
            assert_eq!(
                verdict.map(|e| (e.character, e.offset)),
                *expected,
                "{name:?}"
            );
        }
        let message = check("x\n/etc/shadow").unwrap_err().to_string();
        assert_eq!(
            message,
            "the control character \\n at byte 1 (names in a revision may hold no control characters: U+0000-U+001F, U+007F-U+009F)"
        );
    }
}
