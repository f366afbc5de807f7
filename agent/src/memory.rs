//! Keeping the idle agent small: glibc's heap arenas are capped at start-up,
//! and when the agent turns idle the heap memory a command freed and the
//! resident pages of the agent's own code go back to the kernel. All best
//! effort: nothing here can fail the agent.

// Unsafe by necessity: mallopt, malloc_trim and madvise, which bound the heap
// and give memory back to the kernel. Each block says why it is sound.
#![allow(unsafe_code)]

use std::path::Path;

/// Heap arenas glibc may create: one for the runtime thread and one for the
/// blocking threads that unpack and install. By default glibc creates up to
/// eight per core, each keeping the memory freed in it, which an idle agent
/// then holds for good.
const MALLOC_ARENAS: libc::c_int = 2;

/// Caps glibc's heap arenas (see [`MALLOC_ARENAS`]). Call once, before any
/// thread exists. A no-op on other C libraries.
pub fn limit_heap_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; it is called before
    // any other thread exists, and M_ARENA_MAX takes any positive count.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// What the agent does when it turns idle (after start-up, and when the last
/// running command ends), so that it is as small between deployments as
/// before the first: the heap memory freed by the command goes back to the
/// kernel (glibc only), and so do the resident pages of its own code (see
/// [`release_code_pages`]).
pub fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it is thread-safe and
    // takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
    release_code_pages();
}

/// Unmaps the agent's own code and constant data from its address space.
/// They are clean pages of the executable, still in the page cache: the few
/// the poll loop runs come back on first use (a minor fault, no disk read),
/// the rest (start-up, S3, unpack, install) stay out of the agent's resident
/// set until the next deployment needs them, and the kernel can reclaim them
/// without touching the agent. Only mappings of the executable that are not
/// writable and hold no page of their own (`Anonymous: 0`) are touched: the
/// relocated read-only data (RELRO) is private to the process and must stay.
/// Best effort: nothing happens when /proc cannot be read.
pub fn release_code_pages() {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return;
    };
    for (start, end) in clean_image_ranges(&smaps, &exe) {
        // SAFETY: the range is a whole mapping of the executable, read-only
        // and without any private (anonymous) page, as /proc/self/smaps said;
        // MADV_DONTNEED on such a mapping only drops page-table entries, and
        // the next access reads the same bytes from the file again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The address ranges, in `/proc/self/smaps` text, of the mappings of `exe`
/// that are not writable and hold no anonymous page. Pure.
pub fn clean_image_ranges(smaps: &str, exe: &Path) -> Vec<(usize, usize)> {
    struct Mapping {
        range: (usize, usize),
        candidate: bool,
        anonymous_kib: Option<u64>,
    }
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        let header_range = first.split_once('-').and_then(|(start, end)| {
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        });
        if let Some(range) = header_range {
            let perms = fields.next().unwrap_or_default();
            // Offset, device and inode, then the path (which may hold spaces,
            // or end in " (deleted)").
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            mappings.push(Mapping {
                range,
                candidate: exe.to_str() == Some(path.as_str())
                    && perms.len() == 4
                    && !perms.contains('w'),
                anonymous_kib: None,
            });
        } else if first == "Anonymous:" {
            if let Some(mapping) = mappings.last_mut() {
                mapping.anonymous_kib = fields.next().and_then(|kib| kib.parse().ok());
            }
        }
    }
    mappings
        .into_iter()
        .filter(|m| m.candidate && m.anonymous_kib == Some(0) && m.range.0 < m.range.1)
        .map(|m| m.range)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                 400 kB
Anonymous:             0 kB
55d0c0100000-55d0c0700000 r-xp 00100000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                5000 kB
Anonymous:             0 kB
55d0c0700000-55d0c0800000 r--p 00700000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                 600 kB
Anonymous:           600 kB
55d0c0800000-55d0c0810000 rw-p 00800000 08:01 42 /opt/codedeploy-agent/bin/codedeploy-agent
Rss:                  64 kB
Anonymous:            64 kB
55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]
Rss:                 700 kB
Anonymous:           700 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7f0000200000-7f0000201000 r-xp 00000000 08:01 43 /opt/codedeploy-agent/bin/codedeploy-agent (deleted)
Anonymous:             0 kB
";

    /// Text and plain read-only data of the executable are released; its
    /// RELRO (private pages), its writable data, the heap, other files and
    /// a binary replaced on disk are not.
    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        let exe = Path::new("/opt/codedeploy-agent/bin/codedeploy-agent");
        assert_eq!(
            clean_image_ranges(SMAPS, exe),
            vec![
                (0x55d0c0000000, 0x55d0c0100000),
                (0x55d0c0100000, 0x55d0c0700000)
            ]
        );
        assert!(clean_image_ranges(SMAPS, Path::new("/usr/bin/other")).is_empty());
        assert!(clean_image_ranges("", exe).is_empty());
    }

    /// On this very process: the executable's resident code shrinks, and the
    /// code, its constants and its relocated data all still work afterwards.
    #[test]
    fn releasing_code_pages_shrinks_the_resident_set_and_keeps_the_process_working() {
        fn resident_image_kib() -> u64 {
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let mut total = 0;
            let mut ours = false;
            for line in smaps.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields
                    .first()
                    .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
                {
                    ours = fields.get(5) == Some(&exe.to_str().unwrap());
                } else if ours && fields.first() == Some(&"Rss:") {
                    total += fields[1].parse::<u64>().unwrap();
                }
            }
            total
        }
        // Touch a good part of the binary first: formatting, parsing, YAML.
        let config: serde_norway::Value = serde_norway::from_str("a: [1, 2, {b: c}]").unwrap();
        let before = resident_image_kib();
        release_code_pages();
        let after = resident_image_kib();
        assert!(after < before, "resident image {before} KiB -> {after} KiB");
        let again: serde_norway::Value = serde_norway::from_str("a: [1, 2, {b: c}]").unwrap();
        assert_eq!(config, again);
        assert_eq!(format!("{:?}", Path::new("/x")), "\"/x\"");
    }
}
