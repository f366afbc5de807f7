//! The plan of one Install on disk instead of in memory: a file with no name
//! (it vanishes with the process, killed or not) in the deployment group's
//! folder, that the planner appends steps to, then reads back, once per
//! `permissions` entry, while adding the permission steps; then
//! `install.json`, the policy check and the apply each read it from the
//! start. Memory stays the same for ten files or a million.
//!
//! A record is a tag byte and its paths, each as a 4-byte length and the
//! path's bytes: a copy (source, destination), a folder, or a permission on
//! a path (with the index of the appspec's `permissions` entry, whose steps
//! are expanded when read). Only this process writes and reads it.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::InstallError;
use super::plan::{permission_steps, Instruction, StepSink};
use crate::appspec::Permission;

const COPY: u8 = 1;
const MKDIR: u8 = 2;
const PERMISSION: u8 = 3;

/// Read and write buffers: large enough that a million records cost few
/// system calls, small against the memory the agent runs in.
const BUFFER: usize = 64 * 1024;

#[derive(Debug)]
pub struct Spool {
    writer: BufWriter<File>,
    /// Where the copies and folders end (set once they are all written).
    placed_end: u64,
    /// Bytes written so far.
    written: u64,
    /// The pass of [`StepSink::next_placed`] in progress.
    scan: Option<BufReader<Positioned>>,
    permissions: Vec<Permission>,
    /// For errors: the folder the file lives in.
    folder: PathBuf,
}

impl Spool {
    /// A new, empty spool in `folder`, for an appspec with these permissions.
    pub fn new(folder: &Path, permissions: &[Permission]) -> Result<Spool, InstallError> {
        let file = tempfile::tempfile_in(folder).map_err(InstallError::io(
            "create the install plan's file in",
            folder,
        ))?;
        Ok(Spool {
            writer: BufWriter::with_capacity(BUFFER, file),
            placed_end: 0,
            written: 0,
            scan: None,
            permissions: permissions.to_vec(),
            folder: folder.to_path_buf(),
        })
    }

    fn failed(&self) -> impl FnOnce(io::Error) -> InstallError + '_ {
        InstallError::io("use the install plan's file in", &self.folder)
    }

    fn write_record(&mut self, tag: u8, paths: &[&Path], index: Option<u32>) -> io::Result<()> {
        self.writer.write_all(&[tag])?;
        self.written += 1;
        for path in paths {
            let bytes = path.as_os_str().as_bytes();
            let length = u32::try_from(bytes.len())
                .map_err(|_| io::Error::other("a path longer than 4 GiB"))?;
            self.writer.write_all(&length.to_le_bytes())?;
            self.writer.write_all(bytes)?;
            self.written += 4 + u64::from(length);
        }
        if let Some(index) = index {
            self.writer.write_all(&index.to_le_bytes())?;
            self.written += 4;
        }
        Ok(())
    }

    /// A reader of the spool's first `end` bytes.
    fn reader(&mut self, end: u64) -> io::Result<BufReader<Positioned>> {
        self.writer.flush()?;
        Ok(BufReader::with_capacity(
            BUFFER,
            Positioned {
                file: self.writer.get_ref().try_clone()?,
                at: 0,
                end,
            },
        ))
    }

    /// Every step of the plan written so far, in order, a permission
    /// expanded into its steps.
    pub fn steps(&mut self) -> Result<Steps, InstallError> {
        let reader = self.reader(self.written).map_err(self.failed())?;
        Ok(Steps {
            reader,
            permissions: self.permissions.clone(),
            expanded: Vec::new(),
            folder: self.folder.clone(),
        })
    }
}

impl StepSink for Spool {
    fn push(&mut self, step: Instruction) -> Result<(), InstallError> {
        let written = match &step {
            Instruction::Copy {
                source,
                destination,
            } => self.write_record(COPY, &[source, destination], None),
            Instruction::Mkdir { directory } => self.write_record(MKDIR, &[directory], None),
            // The planner gives permission steps through push_permission.
            other => Err(io::Error::other(format!(
                "a permission step pushed alone: {other:?}"
            ))),
        };
        written.map_err(self.failed())
    }

    fn push_permission(
        &mut self,
        file: &Path,
        index: usize,
        _permission: &Permission,
    ) -> Result<(), InstallError> {
        let written = u32::try_from(index)
            .map_err(|_| io::Error::other("more than 4 billion permissions"))
            .and_then(|index| self.write_record(PERMISSION, &[file], Some(index)));
        written.map_err(self.failed())
    }

    fn end_placing(&mut self) -> Result<(), InstallError> {
        self.placed_end = self.written;
        Ok(())
    }

    fn next_placed(&mut self, read: &mut usize) -> Result<Option<Instruction>, InstallError> {
        if *read == 0 || self.scan.is_none() {
            let reader = self.reader(self.placed_end).map_err(self.failed())?;
            self.scan = Some(reader);
        }
        let Some(scan) = self.scan.as_mut() else {
            return Ok(None);
        };
        let record = read_record(scan).map_err(self.failed())?;
        match record {
            Some(Record::Placed(step)) => {
                *read += 1;
                Ok(Some(step))
            }
            // Permission records come after every copy and folder.
            Some(Record::Permission { .. }) | None => {
                self.scan = None;
                Ok(None)
            }
        }
    }
}

/// The steps of a finished spool, read from its start.
#[derive(Debug)]
pub struct Steps {
    reader: BufReader<Positioned>,
    permissions: Vec<Permission>,
    /// The rest of a permission's steps, last first.
    expanded: Vec<Instruction>,
    folder: PathBuf,
}

impl Iterator for Steps {
    type Item = Result<Instruction, InstallError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(step) = self.expanded.pop() {
            return Some(Ok(step));
        }
        let record = match read_record(&mut self.reader) {
            Ok(record) => record?,
            Err(e) => {
                return Some(Err(InstallError::io(
                    "read the install plan's file in",
                    &self.folder,
                )(e)))
            }
        };
        match record {
            Record::Placed(step) => Some(Ok(step)),
            Record::Permission { file, index } => {
                let Some(permission) = self.permissions.get(index) else {
                    return Some(Err(InstallError::io(
                        "read the install plan's file in",
                        &self.folder,
                    )(io::Error::other(format!(
                        "a permission entry {index} the appspec does not have"
                    )))));
                };
                self.expanded = permission_steps(&file, permission);
                self.expanded.reverse();
                self.next()
            }
        }
    }
}

enum Record {
    Placed(Instruction),
    Permission { file: PathBuf, index: usize },
}

/// The next record; `None` at the end.
fn read_record(reader: &mut impl Read) -> io::Result<Option<Record>> {
    let mut tag = [0u8; 1];
    if reader.read(&mut tag)? == 0 {
        return Ok(None);
    }
    let record = match tag[0] {
        COPY => {
            let source = read_path(reader)?;
            let destination = read_path(reader)?;
            Record::Placed(Instruction::Copy {
                source,
                destination,
            })
        }
        MKDIR => Record::Placed(Instruction::Mkdir {
            directory: read_path(reader)?,
        }),
        PERMISSION => {
            let file = read_path(reader)?;
            let mut index = [0u8; 4];
            reader.read_exact(&mut index)?;
            Record::Permission {
                file,
                index: u32::from_le_bytes(index) as usize,
            }
        }
        other => {
            return Err(io::Error::other(format!(
                "an unknown record type {other} (the file was changed)"
            )))
        }
    };
    Ok(Some(record))
}

fn read_path(reader: &mut impl Read) -> io::Result<PathBuf> {
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let mut bytes = vec![0u8; u32::from_le_bytes(length) as usize];
    reader.read_exact(&mut bytes)?;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// Reads a file from its start up to `end` with positioned reads, so that
/// the writer's position is never moved.
#[derive(Debug)]
struct Positioned {
    file: File,
    at: u64,
    end: u64,
}

impl Read for Positioned {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let wanted = buffer.len().min(left);
        if wanted == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buffer[..wanted], self.at)?;
        self.at += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appspec::{Glob, Mode, ObjectKinds};

    fn permission(mode: &str, owner: Option<&str>) -> Permission {
        Permission {
            object: PathBuf::from("/srv"),
            pattern: Glob::everything(),
            except: Vec::new(),
            kinds: ObjectKinds {
                files: true,
                directories: true,
            },
            owner: owner.map(str::to_string),
            group: None,
            mode: Some(Mode::parse(mode).unwrap()),
            acls: Vec::new(),
            context: None,
        }
    }

    #[test]
    fn the_spool_gives_back_the_plan_an_in_memory_plan_holds() {
        let folder = tempfile::tempdir().unwrap();
        let permissions = vec![permission("644", None), permission("750", Some("www"))];
        let mut spool = Spool::new(folder.path(), &permissions).unwrap();
        let mut memory = super::super::plan::InstallPlan::default();
        let placed = [
            Instruction::Mkdir {
                directory: "/srv/app".into(),
            },
            Instruction::Copy {
                source: "/archive/a b".into(),
                destination: "/srv/app/a b".into(),
            },
            Instruction::Copy {
                source: "/archive/\u{e9}t\u{e9}".into(),
                destination: "/srv/app/\u{e9}t\u{e9}".into(),
            },
        ];
        for sink in [&mut spool as &mut dyn StepSink, &mut memory] {
            for step in &placed {
                sink.push(step.clone()).unwrap();
            }
            sink.end_placing().unwrap();
            // Two passes over the placed steps, with permission steps pushed
            // during the second: each pass sees the copies and folders only.
            for (pass, index) in [(0, 0), (1, 1)] {
                let mut read = 0;
                let mut seen = Vec::new();
                while let Some(step) = sink.next_placed(&mut read).unwrap() {
                    if pass == 1 {
                        if let Instruction::Copy { destination, .. } = &step {
                            sink.push_permission(destination, index, &permissions[index])
                                .unwrap();
                        }
                    }
                    seen.push(step);
                }
                assert_eq!(seen, placed, "pass {pass}");
            }
        }
        let spooled: Vec<Instruction> = spool.steps().unwrap().map(Result::unwrap).collect();
        assert_eq!(spooled, memory.instructions);
        assert_eq!(spooled.len(), 3 + 2 * 2, "{spooled:#?}");
        assert!(
            std::fs::read_dir(folder.path()).unwrap().next().is_none(),
            "the spool has no name in its folder"
        );
    }
}
