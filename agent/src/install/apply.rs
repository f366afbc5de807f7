//! Executing an install plan on the host. Copies land atomically (a partial
//! file in the destination directory, then rename), keep mode and times, and, as
//! root, owner and group (`cp -p`); a link in the revision is recreated as a
//! link. A file copied over a link the host already had to a file (OVERWRITE)
//! lands in the linked file and the link stays, as `cp -p` and the official
//! agent do; that file then also receives the destination's permission steps.
//! Otherwise permission steps never follow a link to its target. Every created
//! path is recorded in the cleanup log before (copies) or right after
//! (directories) it appears.
//!
//! The steps are read from the plan as they are applied. A run of folders
//! and copies (up to [`BATCH`] steps at a time) is applied folders first,
//! then the copies on as many threads as the CPUs allow (at most four), each
//! thread working in its own folder where it can; permission steps wait
//! until every copy before them has landed, and run in the plan's order on
//! one thread. A folder's step always comes before the copies into it, so a
//! batch never needs a folder of a later one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;

use nix::unistd::{Group, Uid, User};

use super::cleanup::{partial_path, remove_partial, CleanupLog};
use super::error::InstallError;
use super::plan::Instruction;
use super::sparse_copy;
use crate::appspec::{AclEntry, AclKind, AclPerms, SeLinuxContext};
use crate::config::PermissionLinks;
use crate::shutdown::Shutdown;

/// Folders and copies applied together, at most: enough to keep the copying
/// threads busy, few enough that a plan of a million steps is applied in
/// the memory of this many.
const BATCH: usize = 4096;

/// Applies the plan's steps as they are read (see the module's
/// documentation).
pub fn apply(
    steps: impl Iterator<Item = Result<Instruction, InstallError>>,
    cleanup: &mut CleanupLog,
    link_targets: PermissionLinks,
    stop: &Shutdown,
) -> Result<(), InstallError> {
    let as_root = Uid::effective().is_root();
    // Destinations whose copy landed in the file a host link points to; the
    // permission steps for them go to that file.
    let mut written_through: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut placing: Vec<Instruction> = Vec::with_capacity(BATCH);
    let mut steps = steps.peekable();
    while let Some(step) = steps.next() {
        if stop.is_triggered() {
            return Err(InstallError::Stopped);
        }
        let step = step?;
        if matches!(step, Instruction::Copy { .. } | Instruction::Mkdir { .. }) {
            placing.push(step);
            let run_goes_on = matches!(
                steps.peek(),
                Some(Ok(Instruction::Copy { .. } | Instruction::Mkdir { .. }))
            );
            if placing.len() == BATCH || !run_goes_on {
                let placed = place_all(&placing, cleanup, as_root, stop)?;
                written_through.extend(
                    placed
                        .into_iter()
                        .map(|(destination, linked)| (destination.to_path_buf(), linked)),
                );
                placing.clear();
            }
        } else {
            permission_step(&step, &written_through, cleanup, link_targets)?;
        }
    }
    Ok(())
}

/// One chmod, chown, ACL or SELinux step, on the file a host link led the
/// copy to when there was one. Copies and folders are [`place_all`]'s.
fn permission_step(
    instruction: &Instruction,
    written_through: &HashMap<PathBuf, PathBuf>,
    cleanup: &mut CleanupLog,
    link_targets: PermissionLinks,
) -> Result<(), InstallError> {
    let file = match instruction {
        Instruction::Chmod { file, .. }
        | Instruction::Chown { file, .. }
        | Instruction::SetAcl { file, .. }
        | Instruction::SetContext { file, .. } => file.as_path(),
        Instruction::Copy { .. } | Instruction::Mkdir { .. } => return Ok(()),
    };
    // `reject_symlink_permission_targets`: a permission step on a link fails
    // instead of leaving the link alone.
    if super::refuses_links(link_targets) && is_symlink(file)? {
        return Err(InstallError::Refused {
            path: file.to_path_buf(),
            reason: "it is a symbolic link and reject_symlink_permission_targets is true; name the link's target in the appspec instead".to_string(),
        });
    }
    let file = written_through.get(file).map_or(file, PathBuf::as_path);
    match instruction {
        Instruction::Chmod { mode, .. } => {
            if !is_symlink(file)? {
                fs::set_permissions(file, fs::Permissions::from_mode(mode.bits()))
                    .map_err(InstallError::io("set the mode of", file))?;
            }
        }
        Instruction::Chown { owner, group, .. } => chown(file, owner.as_deref(), group.as_deref())?,
        Instruction::SetAcl { acl, .. } => {
            if !is_symlink(file)? {
                set_acl(file, acl)?;
            }
        }
        Instruction::SetContext { context, .. } => {
            let real = fs::canonicalize(file).map_err(InstallError::io("resolve", file))?;
            set_context(&real, context)?;
            cleanup.record_context(&real)?;
        }
        Instruction::Copy { .. } | Instruction::Mkdir { .. } => {}
    }
    Ok(())
}

/// Copies at most this many files of one folder in a row on one thread, so
/// that a single large folder is still shared between threads.
const COPIES_PER_TURN: usize = 256;

/// Below this many copies, a second thread costs more than it saves.
const COPIES_FOR_THREADS: usize = 64;

/// Threads that copy files, the calling one included: the CPUs this process
/// may use, at most four (beyond that the disk, not the CPU, is the limit).
fn copy_threads(copies: usize) -> usize {
    if copies < COPIES_FOR_THREADS {
        return 1;
    }
    thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// The copies of a run of folders, as turns: consecutive copies into the same
/// folder, at most [`COPIES_PER_TURN`] each. Threads take whole turns, so two
/// threads rarely create files in the same folder at once (the file system
/// serialises that). Pure.
fn turns(destinations: &[&Path]) -> Vec<Range<usize>> {
    // (turn within its folder, range): a folder's first turns come before
    // any folder's second, so that threads work in different folders.
    let mut turns: Vec<(usize, Range<usize>)> = Vec::new();
    for (index, destination) in destinations.iter().enumerate() {
        let same_folder = index > 0 && destinations[index - 1].parent() == destination.parent();
        match turns.last_mut() {
            Some((_, turn)) if same_folder && turn.len() < COPIES_PER_TURN => turn.end = index + 1,
            Some((nth, _)) if same_folder => {
                let nth = *nth + 1;
                turns.push((nth, index..index + 1));
            }
            _ => turns.push((0, index..index + 1)),
        }
    }
    turns.sort_by_key(|(nth, _)| *nth);
    turns.into_iter().map(|(_, turn)| turn).collect()
}

/// Runs a run of Mkdir and Copy steps: the folders first, in the plan's order
/// (each after its parent), then the copies, on several threads when there
/// are many. No copy in a plan makes a folder or a link to one, so no folder
/// depends on a copy before it. Each copy is listed in the cleanup file
/// before it starts. After a failure no later copy starts, and the failure
/// reported is the earliest in the plan. Returns the destinations that were
/// written through a host link.
fn place_all<'p>(
    steps: &'p [Instruction],
    cleanup: &mut CleanupLog,
    as_root: bool,
    stop: &Shutdown,
) -> Result<Vec<(&'p Path, PathBuf)>, InstallError> {
    let mut copies: Vec<(&Path, &Path)> = Vec::new();
    for step in steps {
        if stop.is_triggered() {
            return Err(InstallError::Stopped);
        }
        match step {
            Instruction::Mkdir { directory } if make_directory(directory)? => {
                cleanup.record(directory)?;
            }
            Instruction::Copy {
                source,
                destination,
            } => copies.push((source, destination)),
            _ => {}
        }
    }
    let destinations: Vec<&Path> = copies.iter().map(|(_, d)| *d).collect();
    let turns = turns(&destinations);
    let next_turn = AtomicUsize::new(0);
    // The index of the earliest copy that failed so far: copies after it
    // are skipped, copies before it still run, so the failure reported is
    // the same whichever thread met which failure first.
    let first_failed = AtomicUsize::new(usize::MAX);
    let cleanup = Mutex::new(cleanup);
    // One thread's share: turns taken in order until none is left.
    let work = || -> Result<Vec<(&'p Path, PathBuf)>, (usize, InstallError)> {
        let mut written_through = Vec::new();
        let mut failure = None;
        while let Some(turn) = turns.get(next_turn.fetch_add(1, Ordering::Relaxed)) {
            for index in turn.clone() {
                if index > first_failed.load(Ordering::Relaxed) {
                    break;
                }
                if stop.is_triggered() {
                    first_failed.fetch_min(index, Ordering::Relaxed);
                    failure = Some((index, InstallError::Stopped));
                    break;
                }
                let (source, destination) = copies[index];
                // Listed first: a crash mid-copy must not leave an unlisted
                // file. The link, not its file, is listed: the next Install
                // removes the link only, as the official agent does.
                let listed = cleanup
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .record(destination);
                // The lock is released here: the copies themselves overlap.
                match listed.and_then(|()| copy(source, destination, as_root)) {
                    Ok(Some(linked)) => written_through.push((destination, linked)),
                    Ok(None) => {}
                    Err(error) => {
                        first_failed.fetch_min(index, Ordering::Relaxed);
                        failure = Some((index, error));
                        break;
                    }
                }
            }
        }
        match failure {
            Some(failure) => Err(failure),
            None => Ok(written_through),
        }
    };
    let outcomes = thread::scope(|scope| {
        let helpers: Vec<_> = (1..copy_threads(copies.len()))
            .filter_map(|_| {
                thread::Builder::new()
                    .name("codedeploy-install".to_string())
                    .spawn_scoped(scope, work)
                    .ok()
            })
            .collect();
        let mut outcomes = vec![work()];
        for helper in helpers {
            // A copy never panics on input; a thread that did anyway is
            // reported like a failed copy.
            outcomes.push(helper.join().unwrap_or_else(|_| {
                Err((
                    usize::MAX,
                    InstallError::io("install", Path::new("(a copying thread)"))(io::Error::other(
                        "the thread stopped unexpectedly",
                    )),
                ))
            }));
        }
        outcomes
    });
    let mut written_through = Vec::new();
    let mut failures = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(through) => written_through.extend(through),
            Err(failure) => failures.push(failure),
        }
    }
    match failures.into_iter().min_by_key(|(index, _)| *index) {
        Some((_, error)) => Err(error),
        None => Ok(written_through),
    }
}

/// Creates `directory`; false when a directory already stands there because
/// another deployment group created it after this plan was made. That group
/// listed it in its own cleanup file, so this one does not.
fn make_directory(directory: &Path) -> Result<bool, InstallError> {
    match fs::create_dir(directory) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let is_dir = fs::symlink_metadata(directory).is_ok_and(|meta| meta.is_dir());
            if is_dir {
                Ok(false)
            } else {
                Err(InstallError::io("create the directory", directory)(err))
            }
        }
        Err(err) => Err(InstallError::io("create the directory", directory)(err)),
    }
}

fn is_symlink(path: &Path) -> Result<bool, InstallError> {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .map_err(InstallError::io("inspect", path))
}

/// The file a copy over `destination` writes to when `destination` is a link
/// the host already has to a regular file: `cp -p` opens the destination
/// through the link, so the link stays and its file gets the new content.
/// `None` for anything else (no link, a dangling link, a link to a
/// directory or a device), which the copy replaces or creates as it is.
fn linked_file(destination: &Path) -> Option<PathBuf> {
    let is_link = fs::symlink_metadata(destination).is_ok_and(|meta| meta.file_type().is_symlink());
    if is_link && fs::metadata(destination).is_ok_and(|meta| meta.is_file()) {
        fs::canonicalize(destination).ok()
    } else {
        None
    }
}

/// Copies `source` to `destination`; returns the linked file it wrote
/// instead when `destination` is a host link to a file.
fn copy(source: &Path, destination: &Path, as_root: bool) -> Result<Option<PathBuf>, InstallError> {
    let meta = fs::symlink_metadata(source).map_err(InstallError::io("read", source))?;
    let linked = if meta.file_type().is_symlink() {
        // A link in the revision replaces what is there with a link.
        None
    } else {
        linked_file(destination)
    };
    let landing = linked.as_deref().unwrap_or(destination);
    place(source, &meta, landing, as_root)?;
    Ok(linked)
}

/// Puts a copy of `source` (whose metadata is `meta`) at `destination`
/// through a partial file beside it and a rename. The partial file's name
/// follows from the destination's ([`partial_path`]): one a crash left is
/// replaced here, or removed by the next Install's cleanup.
fn place(
    source: &Path,
    meta: &fs::Metadata,
    destination: &Path,
    as_root: bool,
) -> Result<(), InstallError> {
    let owner = as_root.then(|| (meta.uid(), meta.gid()));
    let partial = partial_path(destination);
    let write = || -> io::Result<()> {
        if meta.file_type().is_symlink() {
            let target = fs::read_link(source)?;
            create_partial(destination, || {
                std::os::unix::fs::symlink(&target, &partial)
            })?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::lchown(&partial, Some(uid), Some(gid))?;
            }
        } else {
            // create_new: O_EXCL, which also refuses to follow a link planted
            // at the partial file's name since it was cleared.
            let mut output = create_partial(destination, || {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&partial)
            })?;
            // An empty file (a package's __init__.py, a .gitkeep) has nothing
            // to copy: its source is not even opened.
            if meta.len() > 0 {
                let mut input = fs::File::open(source)?;
                if sparse_copy::has_holes(meta) {
                    sparse_copy::copy_with_holes(&mut input, &mut output, meta.len())?;
                } else {
                    // File to File: std uses copy_file_range (the kernel
                    // copies, no user buffer), falling back to read/write
                    // where the file system cannot.
                    io::copy(&mut input, &mut output)?;
                }
            }
            // Owner before mode: chown clears setuid and setgid.
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&output, Some(uid), Some(gid))?;
            }
            output.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            let times = fs::FileTimes::new()
                .set_accessed(meta.accessed()?)
                .set_modified(meta.modified()?);
            output.set_times(times)?;
        }
        fs::rename(&partial, destination)
    };
    write().map_err(|error| {
        let _ = fs::remove_file(&partial);
        InstallError::io("install", destination)(error)
    })
}

/// Runs `create` (an exclusive create of `destination`'s partial file); when
/// a partial file a crash left is in the way, removes it and tries once more.
fn create_partial<T>(destination: &Path, create: impl Fn() -> io::Result<T>) -> io::Result<T> {
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            remove_partial(destination).map_err(io::Error::other)?;
            create()
        }
        other => other,
    }
}

fn chown(file: &Path, owner: Option<&str>, group: Option<&str>) -> Result<(), InstallError> {
    let uid = match owner {
        Some(name) => Some(
            User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| InstallError::UnknownUser {
                    user: name.to_string(),
                    path: file.to_path_buf(),
                })?
                .uid
                .as_raw(),
        ),
        None => None,
    };
    let gid = match group {
        Some(name) => Some(
            Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| InstallError::UnknownGroup {
                    group: name.to_string(),
                    path: file.to_path_buf(),
                })?
                .gid
                .as_raw(),
        ),
        None => None,
    };
    std::os::unix::fs::lchown(file, uid, gid).map_err(InstallError::io("change the owner of", file))
}

/// The complete ACL for `setfacl --set`: the appspec's entries plus the base
/// entries from the file's current mode, a mask when there are named entries,
/// and default base entries (and mask) when any default entry is given.
pub fn full_acl(entries: &[AclEntry], mode: u32) -> Vec<String> {
    let perms = |bits: u32| AclPerms {
        read: bits & 4 != 0,
        write: bits & 2 != 0,
        execute: bits & 1 != 0,
    };
    let (owner, group, other) = (perms(mode >> 6), perms(mode >> 3), perms(mode));
    let entry = |default: bool, kind: AclKind, perms: AclPerms| AclEntry {
        default,
        kind,
        name: String::new(),
        perms,
    };
    let has = |default: bool, test: &dyn Fn(&AclEntry) -> bool| {
        entries.iter().any(|e| e.default == default && test(e))
    };
    let base = |kind: AclKind| move |e: &AclEntry| e.kind == kind && e.name.is_empty();
    let named = |e: &AclEntry| !e.name.is_empty();
    let mask = |e: &AclEntry| e.kind == AclKind::Mask;

    let mut full: Vec<AclEntry> = entries.to_vec();
    full.push(entry(false, AclKind::User, owner));
    full.push(entry(false, AclKind::Group, group));
    full.push(entry(false, AclKind::Other, other));
    if has(false, &named) && !has(false, &mask) {
        full.push(entry(false, AclKind::Mask, group));
    }
    if entries.iter().any(|e| e.default) {
        if !has(true, &base(AclKind::User)) {
            full.push(entry(true, AclKind::User, owner));
        }
        let default_group = entries
            .iter()
            .find(|e| e.default && base(AclKind::Group)(e))
            .map(|e| e.perms)
            .unwrap_or(group);
        if !has(true, &base(AclKind::Group)) {
            full.push(entry(true, AclKind::Group, default_group));
        }
        if !has(true, &base(AclKind::Other)) {
            full.push(entry(true, AclKind::Other, other));
        }
        if has(true, &named) && !has(true, &mask) {
            full.push(entry(true, AclKind::Mask, default_group));
        }
    }
    full.iter().map(ToString::to_string).collect()
}

fn set_acl(file: &Path, entries: &[AclEntry]) -> Result<(), InstallError> {
    let mode = fs::metadata(file)
        .map_err(InstallError::io("read the mode of", file))?
        .mode();
    let acl = full_acl(entries, mode).join(",");
    run_tool(
        file,
        "setfacl",
        &[OsString::from("--set"), acl.into(), file.into()],
    )
}

fn set_context(real: &Path, context: &SeLinuxContext) -> Result<(), InstallError> {
    let mut args: Vec<OsString> = vec!["fcontext".into(), "-a".into()];
    if let Some(user) = &context.user {
        args.extend(["-s".into(), user.into()]);
    }
    args.extend(["-t".into(), (&context.type_).into()]);
    if let Some(range) = &context.range {
        args.extend(["-r".into(), range.to_string().into()]);
    }
    args.push(real.into());
    run_tool(real, "semanage", &args)?;
    // -F also resets user and range, which plain -v would leave.
    run_tool(real, "restorecon", &["-vF".into(), real.into()])
}

/// Runs a permission tool directly (no shell), failing with its status and
/// the end of its error output.
fn run_tool(path: &Path, program: &str, args: &[OsString]) -> Result<(), InstallError> {
    let command = std::iter::once(program.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let failure = |detail: String| InstallError::Command {
        command: command.clone(),
        path: path.to_path_buf(),
        detail,
    };
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                failure(format!(
                    "could not be started: {program} is not installed on this host; {}",
                    missing_tool_hint(program)
                ))
            } else {
                failure(format!("could not be started: {e}"))
            }
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    let tail: String = stderr
        .chars()
        .skip(stderr.chars().count().saturating_sub(500))
        .collect();
    Err(failure(format!("failed ({}): {tail}", output.status)))
}

/// What to install when the appspec asks for a tool the host lacks.
fn missing_tool_hint(program: &str) -> &'static str {
    match program {
        "setfacl" => "install the acl package, or remove `acls` from the appspec's permissions",
        "semanage" | "restorecon" => {
            "install the SELinux policy tools (policycoreutils-python-utils, or policycoreutils on Debian), or remove `context` from the appspec's permissions"
        }
        _ => "install it, or remove what needs it from the appspec",
    }
}

#[cfg(test)]
mod tests;
