//! `<group>-install.json`: the plan in the official agent's JSON shape, written
//! atomically (temporary file + rename) so that a reader never sees half of it.
//! Informational for operators and tools; Install never reads it back.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::error::InstallError;
use super::plan::{InstallPlan, Instruction};
use crate::atomic_file::Durability;

#[derive(Serialize)]
struct Document<'a> {
    instructions: Steps<'a>,
}

/// The plan's instructions, each turned into its [`Step`] as it is written:
/// the file of a revision of many files is never held whole in memory.
struct Steps<'a>(&'a InstallPlan);

impl Serialize for Steps<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.instructions.iter().map(step))
    }
}

/// One instruction; field order follows the official file.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Step<'a> {
    Copy {
        source: Cow<'a, str>,
        destination: Cow<'a, str>,
    },
    Mkdir {
        directory: Cow<'a, str>,
    },
    Chmod {
        mode: String,
        file: Cow<'a, str>,
    },
    Setfacl {
        acl: Vec<String>,
        file: Cow<'a, str>,
    },
    Semanage {
        context: Context<'a>,
        file: Cow<'a, str>,
    },
    Chown {
        owner: Option<&'a str>,
        group: Option<&'a str>,
        file: Cow<'a, str>,
    },
}

#[derive(Serialize)]
struct Context<'a> {
    user: Option<&'a str>,
    role: Option<&'a str>,
    #[serde(rename = "type")]
    type_: &'a str,
    range: Option<String>,
}

/// The plan as the JSON document of `<group>-install.json`.
pub fn instructions_json(plan: &InstallPlan) -> String {
    serde_json::to_string(&document(plan)).expect("strings, lists and options always serialise")
}

fn document(plan: &InstallPlan) -> Document<'_> {
    Document {
        instructions: Steps(plan),
    }
}

fn step(instruction: &Instruction) -> Step<'_> {
    match instruction {
        Instruction::Copy {
            source,
            destination,
        } => Step::Copy {
            source: source.to_string_lossy(),
            destination: destination.to_string_lossy(),
        },
        Instruction::Mkdir { directory } => Step::Mkdir {
            directory: directory.to_string_lossy(),
        },
        Instruction::Chmod { file, mode } => Step::Chmod {
            mode: mode.to_string(),
            file: file.to_string_lossy(),
        },
        Instruction::SetAcl { file, acl } => Step::Setfacl {
            acl: acl.iter().map(ToString::to_string).collect(),
            file: file.to_string_lossy(),
        },
        Instruction::SetContext { file, context } => Step::Semanage {
            context: Context {
                user: context.user.as_deref(),
                role: None,
                type_: &context.type_,
                range: context.range.as_ref().map(ToString::to_string),
            },
            file: file.to_string_lossy(),
        },
        Instruction::Chown { file, owner, group } => Step::Chown {
            owner: owner.as_deref(),
            group: group.as_deref(),
            file: file.to_string_lossy(),
        },
    }
}

/// Writes the instructions file, replacing the previous Install's, from the
/// plan's steps as they are read; each step is first passed to `check`. A
/// step `check` refuses, or one that cannot be read, leaves the previous
/// file in place and is the error returned.
pub fn write_instructions(
    steps: impl Iterator<Item = Result<Instruction, InstallError>>,
    check: impl Fn(&Instruction) -> Result<(), InstallError>,
    path: &Path,
) -> Result<(), InstallError> {
    let mut refusal = None;
    // Synced: the next Install's cleanup trusts it to say what this one made.
    let written = crate::atomic_file::replace(path, None, Durability::Synced, |file| {
        let mut writer = BufWriter::new(file);
        writer.write_all(b"{\"instructions\":[")?;
        for (at, instruction) in steps.enumerate() {
            let instruction = match instruction.and_then(|i| check(&i).map(|()| i)) {
                Ok(instruction) => instruction,
                Err(error) => {
                    refusal = Some(error);
                    return Err(std::io::Error::other("the plan was refused"));
                }
            };
            if at > 0 {
                writer.write_all(b",")?;
            }
            serde_json::to_writer(&mut writer, &step(&instruction))?;
        }
        writer.write_all(b"]}")?;
        writer.flush()
    });
    match (written, refusal) {
        (_, Some(refusal)) => Err(refusal),
        (written, None) => {
            written.map_err(InstallError::io("write the install instructions", path))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::appspec::{AclEntry, Mode, SeLinuxContext, SeLinuxRange};

    #[test]
    fn instructions_have_the_official_json_shape() {
        let file = PathBuf::from("/srv/app/run.sh");
        let plan = InstallPlan {
            instructions: vec![
                Instruction::Mkdir {
                    directory: "/srv/app".into(),
                },
                Instruction::Copy {
                    source: "/archive/run.sh".into(),
                    destination: file.clone(),
                },
                Instruction::Chmod {
                    file: file.clone(),
                    mode: Mode::parse("755").unwrap(),
                },
                Instruction::SetAcl {
                    file: file.clone(),
                    acl: vec![AclEntry::parse("u:bob:rw").unwrap()],
                },
                Instruction::SetContext {
                    file: file.clone(),
                    context: Box::new(SeLinuxContext {
                        user: Some("system_u".into()),
                        type_: "bin_t".into(),
                        range: Some(SeLinuxRange::parse("s0").unwrap()),
                    }),
                },
                Instruction::Chown {
                    file,
                    owner: Some("www".into()),
                    group: None,
                },
            ],
        };
        assert_eq!(
            instructions_json(&plan),
            concat!(
                r#"{"instructions":["#,
                r#"{"type":"mkdir","directory":"/srv/app"},"#,
                r#"{"type":"copy","source":"/archive/run.sh","destination":"/srv/app/run.sh"},"#,
                r#"{"type":"chmod","mode":"755","file":"/srv/app/run.sh"},"#,
                r#"{"type":"setfacl","acl":["user:bob:rw-"],"file":"/srv/app/run.sh"},"#,
                r#"{"type":"semanage","context":{"user":"system_u","role":null,"type":"bin_t","range":"s0"},"file":"/srv/app/run.sh"},"#,
                r#"{"type":"chown","owner":"www","group":null,"file":"/srv/app/run.sh"}"#,
                r#"]}"#
            )
        );
    }
}
