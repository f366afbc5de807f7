//! The large revision of issue 11: 19,800 files of 10 KiB and 200 of
//! 1 MiB in 40 folders, half random bytes and half repeated text so the tgz
//! comes to about half the unpacked size (~200 MiB for ~393 MiB), with an
//! appspec copying everything to one destination. It is generated once into
//! a cache directory and reused while its manifest matches. Also the
//! baseline the agent is compared with: `tar -xzf` then `cp -a` of the same
//! bundle on the same disk.
//!
//! `layout` and `fill` are pure (same input, same bytes); the rest writes
//! files or runs tar and cp.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The shape of the revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub small_files: usize,
    pub small_size: usize,
    pub large_files: usize,
    pub large_size: usize,
    pub folders: usize,
}

/// Issue 11's revision.
pub const ISSUE_11: Shape = Shape {
    small_files: 19_800,
    small_size: 10 * 1024,
    large_files: 200,
    large_size: 1024 * 1024,
    folders: 40,
};

impl Shape {
    /// The same proportions divided by `factor` (a smaller variant for
    /// profilers that slow the agent down 50×).
    pub fn scaled_down(self, factor: usize) -> Shape {
        let factor = factor.max(1);
        Shape {
            small_files: (self.small_files / factor).max(1),
            large_files: (self.large_files / factor).max(1),
            folders: (self.folders / factor).max(1),
            ..self
        }
    }

    pub fn files(&self) -> usize {
        self.small_files + self.large_files
    }

    pub fn total_bytes(&self) -> u64 {
        (self.small_files * self.small_size + self.large_files * self.large_size) as u64
    }

    fn manifest(&self, destination: &Path) -> String {
        format!(
            "large revision v1: {} x {} B + {} x {} B in {} folders, destination {}\n",
            self.small_files,
            self.small_size,
            self.large_files,
            self.large_size,
            self.folders,
            destination.display()
        )
    }
}

/// Every file of the revision: relative path and size, folders filled in
/// turn so each holds the same mix.
pub fn layout(shape: &Shape) -> Vec<(String, usize)> {
    let folders = shape.folders.max(1);
    let mut files = Vec::with_capacity(shape.files());
    for i in 0..shape.small_files {
        files.push((
            format!("folder-{:02}/file-{i:05}.dat", i % folders),
            shape.small_size,
        ));
    }
    for i in 0..shape.large_files {
        files.push((
            format!("folder-{:02}/large-{i:03}.bin", i % folders),
            shape.large_size,
        ));
    }
    files.sort();
    files
}

/// splitmix64: a tiny, fast, well-mixed generator; the content only has to
/// defeat gzip, not be secure.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const TEXT: &[u8] = b"codedeploy benchmark revision: the same line again and again. ";

/// Fills `buf` for file number `seed`: in each 1 KiB, 512 random bytes
/// then 512 bytes of repeated text.
pub fn fill(seed: u64, buf: &mut [u8]) {
    let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xC0DE_DE91_0000_0000;
    for (k, chunk) in buf.chunks_mut(1024).enumerate() {
        let (random, text) = chunk.split_at_mut(chunk.len().min(512));
        for word in random.chunks_mut(8) {
            let bytes = splitmix64(&mut state).to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        for (j, b) in text.iter_mut().enumerate() {
            *b = TEXT[(j + k) % TEXT.len()];
        }
    }
}

/// The appspec of the revision: everything to `destination`, no hooks (the
/// figure is the agent's own time).
pub fn appspec(destination: &Path) -> String {
    format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: /\n    destination: {}\n",
        destination.display()
    )
}

/// The cached bundle for `shape` installing to `destination`, generated
/// into `cache_dir` unless a bundle with the same manifest is already there.
/// Returns its path and whether it was generated now.
pub fn ensure_bundle(
    cache_dir: &Path,
    shape: &Shape,
    destination: &Path,
) -> Result<(PathBuf, bool), String> {
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| format!("cannot create {}: {e}", cache_dir.display()))?;
    let name = format!("large-revision-{}-files", shape.files());
    let bundle = cache_dir.join(format!("{name}.tgz"));
    let manifest_path = cache_dir.join(format!("{name}.txt"));
    let manifest = shape.manifest(destination);
    if bundle.is_file()
        && std::fs::read_to_string(&manifest_path).ok().as_deref() == Some(&manifest)
    {
        return Ok((bundle, false));
    }
    let partial = cache_dir.join(format!("{name}.tgz.partial"));
    write_bundle(&partial, shape, destination)?;
    std::fs::rename(&partial, &bundle)
        .and_then(|_| std::fs::write(&manifest_path, manifest))
        .map_err(|e| format!("cannot store {}: {e}", bundle.display()))?;
    Ok((bundle, true))
}

/// Writes the tree into a staging folder next to `path` and archives it
/// with the system's `tar -czf` (numeric root owner, fixed times, sorted
/// names): GNU gzip is what a user would have made the bundle with, and it
/// is many times faster than a debug build of a Rust deflater.
fn write_bundle(path: &Path, shape: &Shape, destination: &Path) -> Result<(), String> {
    let staging = path.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let io = |what: &Path, e: std::io::Error| format!("cannot write {}: {e}", what.display());
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    let appspec_path = staging.join("appspec.yml");
    std::fs::write(&appspec_path, appspec(destination)).map_err(|e| io(&appspec_path, e))?;
    let mut folders = std::collections::BTreeSet::new();
    let mut buf = vec![0u8; shape.small_size.max(shape.large_size)];
    for (seed, (rel, size)) in layout(shape).into_iter().enumerate() {
        let file = staging.join(&rel);
        if let Some(folder) = rel.split('/').next() {
            if folders.insert(folder.to_string()) {
                let dir = staging.join(folder);
                std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        let content = &mut buf[..size];
        fill(seed as u64, content);
        std::fs::write(&file, &content[..]).map_err(|e| io(&file, e))?;
    }
    let status = Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1700000000",
            "--sort=name",
            "-czf",
        ])
        .arg(path)
        .arg("-C")
        .arg(&staging)
        .arg("appspec.yml")
        .args(&folders)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let _ = std::fs::remove_dir_all(&staging);
    if status.success() {
        Ok(())
    } else {
        Err(format!("tar -czf {} failed: {status}", path.display()))
    }
}

/// One `tar -xzf` + `cp -a` of the bundle, in seconds each.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    pub tar_secs: f64,
    pub cp_secs: f64,
}

impl Baseline {
    pub fn total(&self) -> f64 {
        self.tar_secs + self.cp_secs
    }
}

fn run(what: &str, command: &mut Command) -> Result<f64, String> {
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed: {status}"));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Flushes dirty pages so that a timed step does not pay for the previous
/// one's writeback. Says so when that took long (other writers on the
/// machine), since it explains a slow run.
pub fn sync() {
    let started = Instant::now();
    let _ = Command::new("sync").status();
    let took = started.elapsed().as_secs_f64();
    if took > 5.0 {
        println!("large revision: sync took {took:.1} s");
    }
}

/// Waits after a tree of 20,000 files was deleted before the next timed
/// step creates one: ext4 skips inodes deleted within the last ~30 s when it
/// allocates new ones (`recently_deleted` in the kernel), and a profile of
/// the agent right after such a delete spent 58 % of its time there. Both
/// the agent and the baseline get the same quiet start.
pub fn settle_after_delete() {
    std::thread::sleep(std::time::Duration::from_secs(40));
}

/// A new ext4 file system, made in an image file on the same disk and
/// mounted at `dir` for one timed step, unmounted and deleted after it. Each
/// of the agent and the baseline then starts on a file system where no
/// inode was ever freed, instead of one whose allocator state depends on
/// what the previous step deleted (see [`settle_after_delete`]): runs under
/// the old method ranged from 0.8× to 4.6× for the same agent.
pub struct FreshFs {
    dir: PathBuf,
    image: PathBuf,
}

impl FreshFs {
    /// As root with `mkfs.ext4` and loop devices at hand.
    pub fn available() -> bool {
        let root = std::fs::read_to_string("/proc/self/status")
            .map(|status| {
                status
                    .lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        let mkfs = Command::new("mkfs.ext4")
            .arg("-V")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        root && mkfs && Path::new("/dev/loop-control").exists()
    }

    /// `inodes`: at least that many inodes instead of mkfs's default (one
    /// per 16 KiB, about 196,000 in the 3 GiB image).
    pub fn mount(dir: &Path, image: &Path, inodes: Option<u64>) -> Result<FreshFs, String> {
        unmount(dir);
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(image);
        run(
            "truncate",
            Command::new("truncate").args(["-s", "3G"]).arg(image),
        )?;
        // Inode tables and journal written now, not by a kernel thread in the
        // middle of the timed step.
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]);
        if let Some(inodes) = inodes {
            mkfs.arg("-N").arg(inodes.to_string());
        }
        run("mkfs.ext4", mkfs.arg(image))?;
        run(
            "mount",
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(image)
                .arg(dir),
        )?;
        sync();
        Ok(FreshFs {
            dir: dir.to_path_buf(),
            image: image.to_path_buf(),
        })
    }
}

/// Where a phase's timed steps run: `<cache>/fresh`, a new file system per
/// step, when the machine allows it ([`FreshFs::available`]); else the
/// cache's own folder and file system.
pub struct StepFs {
    pub fresh: bool,
    pub work: PathBuf,
    image: PathBuf,
    inodes: Option<u64>,
}

impl StepFs {
    /// `inodes`: see [`FreshFs::mount`].
    pub fn new(cache: &Path, inodes: Option<u64>) -> StepFs {
        let fresh = FreshFs::available();
        StepFs {
            fresh,
            work: if fresh {
                cache.join("fresh")
            } else {
                cache.to_path_buf()
            },
            image: cache.join("fresh-fs.img"),
            inodes,
        }
    }

    /// A new file system at `work` for one step (gone when dropped), or
    /// nothing when steps share the cache's.
    pub fn mount(&self) -> Result<Option<FreshFs>, String> {
        match self.fresh {
            true => FreshFs::mount(&self.work, &self.image, self.inodes).map(Some),
            false => Ok(None),
        }
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        unmount(&self.dir);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn unmount(dir: &Path) {
    let _ = Command::new("umount")
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status();
}

/// Unpacks `bundle` with `tar -xzf` into `<work>/baseline-tar`, copies that
/// with `cp -a` to `<work>/baseline-cp`, times both, and removes both.
/// `settle`: wait after deleting earlier trees (not needed on a [`FreshFs`]).
pub fn baseline(bundle: &Path, work: &Path, settle: bool) -> Result<Baseline, String> {
    let unpacked = work.join("baseline-tar");
    let copied = work.join("baseline-cp");
    for dir in [&unpacked, &copied] {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::fs::create_dir_all(&unpacked)
        .map_err(|e| format!("cannot create {}: {e}", unpacked.display()))?;
    sync();
    if settle {
        settle_after_delete();
    }
    let tar_secs = run(
        "tar -xzf",
        Command::new("tar")
            .arg("-xzf")
            .arg(bundle)
            .arg("-C")
            .arg(&unpacked),
    )?;
    sync();
    let cp_secs = run(
        "cp -a",
        Command::new("cp").arg("-a").arg(&unpacked).arg(&copied),
    )?;
    for dir in [&unpacked, &copied] {
        let _ = std::fs::remove_dir_all(dir);
    }
    sync();
    Ok(Baseline { tar_secs, cp_secs })
}

/// The regular files under `dir`.
pub fn file_paths(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// Regular files under `dir`, and their total size.
pub fn count_files(dir: &Path) -> (usize, u64) {
    let files = file_paths(dir);
    let bytes = files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum();
    (files.len(), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    #[test]
    fn issue_11_layout_has_the_issue_s_counts_sizes_and_folders() {
        let files = layout(&ISSUE_11);
        assert_eq!(files.len(), 20_000);
        assert_eq!(
            files.iter().filter(|(_, s)| *s == 10 * 1024).count(),
            19_800
        );
        assert_eq!(files.iter().filter(|(_, s)| *s == 1024 * 1024).count(), 200);
        let folders: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|(p, _)| p.split('/').next().unwrap())
            .collect();
        assert_eq!(folders.len(), 40);
        let total: u64 = files.iter().map(|(_, s)| *s as u64).sum();
        assert_eq!(total, ISSUE_11.total_bytes());
        // 393.4 MiB, as the issue says (~393 MiB).
        assert_eq!(total / (1024 * 1024), 393);
    }

    #[test]
    fn scaled_down_keeps_the_mix() {
        let small = ISSUE_11.scaled_down(20);
        assert_eq!(
            (small.small_files, small.large_files, small.folders),
            (990, 10, 2)
        );
        assert_eq!(layout(&small).len(), 1_000);
    }

    #[test]
    fn fill_is_deterministic_and_half_compressible() {
        let mut a = vec![0u8; 10 * 1024];
        let mut b = vec![0u8; 10 * 1024];
        fill(7, &mut a);
        fill(7, &mut b);
        assert_eq!(a, b);
        fill(8, &mut b);
        assert_ne!(a, b);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&a).unwrap();
        let ratio = gz.finish().unwrap().len() as f64 / a.len() as f64;
        assert!((0.48..0.56).contains(&ratio), "compression ratio {ratio}");
    }
}
