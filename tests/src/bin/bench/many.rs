//! The many-files phase (issue 8's "a million empty files"): bundles of empty
//! files in 1,000 folders, generated once into the cache with the tar and
//! flate2 crates (headers only, so this is fast even in a debug build).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Folders the files are spread over (1,000 files each for a million).
const FOLDERS: usize = 1_000;

/// The bundle of `files` empty files whose appspec installs them under
/// `destination`, from the cache when it is there.
pub fn ensure_bundle(
    cache_dir: &Path,
    files: usize,
    destination: &Path,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| format!("cannot create {}: {e}", cache_dir.display()))?;
    let bundle = cache_dir.join(format!("empty-files-{files}.tgz"));
    let manifest_path = cache_dir.join(format!("empty-files-{files}.txt"));
    let manifest = appspec(destination);
    if bundle.is_file()
        && std::fs::read_to_string(&manifest_path).ok().as_deref() == Some(&manifest)
    {
        return Ok(bundle);
    }
    let partial = bundle.with_extension("tgz.partial");
    write_bundle(&partial, files, &manifest)
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, &bundle)
        .and_then(|()| std::fs::write(&manifest_path, &manifest))
        .map_err(|e| format!("cannot store {}: {e}", bundle.display()))?;
    Ok(bundle)
}

fn appspec(destination: &Path) -> String {
    format!(
        "version: 0.0\nos: linux\nfiles:\n  - source: /files\n    destination: {}\n",
        destination.display()
    )
}

fn write_bundle(path: &Path, files: usize, appspec: &str) -> std::io::Result<()> {
    let out = std::fs::File::create(path)?;
    let gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(out), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let entry = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_700_000_000);
        header
    };
    let mut header = entry(tar::EntryType::Regular, 0o644, appspec.len() as u64);
    tar.append_data(&mut header, "appspec.yml", appspec.as_bytes())?;
    for folder in 0..FOLDERS {
        let mut header = entry(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(
            &mut header,
            format!("files/d{folder:04}/"),
            std::io::empty(),
        )?;
    }
    for file in 0..files {
        let mut header = entry(tar::EntryType::Regular, 0o644, 0);
        let name = format!("files/d{:04}/f{file:07}", file % FOLDERS);
        tar.append_data(&mut header, name, std::io::empty())?;
    }
    tar.into_inner()?.finish()?.flush()
}
