//! Sparse files in tar bundles (`tar --sparse`): which entries are sparse,
//! where their data lies, and writing them with their holes left as holes.
//!
//! Two families exist. The old GNU format (entry type `S`) is read by the tar
//! crate, which hands over the content with the holes filled in as zeros:
//! [`write_leaving_holes`] leaves every all-zero block it is given as a hole. The
//! PAX formats (GNU tar `--format=posix`, versions 0.0, 0.1 and 1.0) look like
//! a plain file to the tar crate, whose content is the data chunks one after
//! the other (1.0: after a map of them), and whose header name is
//! `…/GNUSparseFile.<pid>/<name>` in 0.1 and 1.0: [`pax_layout`] reads the
//! records, [`read_map`] reads the 1.0 map, [`check_chunks`] checks them, and
//! the unpacker puts each chunk at its offset.
//!
//! Every number here comes from the archive and is hostile until checked:
//! chunks must be in order, must not overlap, must lie inside the file's
//! size, and must add up to the data the entry carries. What a sparse entry
//! costs against `archive_max_extraction_size` is its size once unpacked,
//! holes included (a 10 KB archive must not declare a terabyte file), which
//! the caller checks with [`SparseLayout::size`] before anything is written.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// One stretch of data of a sparse file; what lies between stretches is a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub offset: u64,
    pub length: u64,
}

/// How a PAX sparse entry's content is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PaxChunks {
    /// 0.0 and 0.1: the chunks are listed in the extended header.
    Listed(Vec<Chunk>),
    /// 1.0: the content starts with the map, padded to 512 bytes.
    MapInContent,
}

/// A PAX sparse entry, from its extended header records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SparseLayout {
    /// The file's size once unpacked, holes included.
    pub size: u64,
    /// The file's real name (0.1, 1.0), instead of the header's
    /// `GNUSparseFile.<pid>` one; 0.0 keeps the header's name.
    pub name: Option<PathBuf>,
    pub chunks: PaxChunks,
}

/// More chunks than this in one file is refused: an honest sparse file has a
/// few (a disk image some thousands); each costs 16 bytes held here.
pub(crate) const MAX_CHUNKS: usize = 100_000;

/// Why a sparse entry cannot be unpacked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SparseError {
    #[error("its sparse header record {key} is not a number: {value:?}")]
    NotANumber { key: String, value: String },
    #[error("its sparse header has GNU.sparse.major={major}, GNU.sparse.minor={minor}, a version this agent does not read (it reads 0.0, 0.1 and 1.0); recreate the archive without --sparse")]
    UnknownVersion { major: String, minor: String },
    #[error(
        "its sparse header does not give the file's size (GNU.sparse.size or GNU.sparse.realsize)"
    )]
    NoSize,
    #[error("its sparse map lists a chunk with no length or no offset")]
    UnpairedChunk,
    #[error("its sparse map lists more than {MAX_CHUNKS} chunks")]
    TooManyChunks,
    #[error("its sparse map is malformed: {0}")]
    MalformedMap(&'static str),
    #[error("its sparse chunk at offset {offset} ({length} bytes) overlaps the one before it or is out of order")]
    OutOfOrder { offset: u64, length: u64 },
    #[error("its sparse chunk at offset {offset} ({length} bytes) ends past the file's size of {size} bytes")]
    PastTheEnd { offset: u64, length: u64, size: u64 },
    #[error("its sparse chunks hold {listed} bytes of data but the entry carries {carried}")]
    DataMismatch { listed: u64, carried: u64 },
}

/// The PAX sparse layout named by an entry's extended header `records`
/// (key, value, in header order); `None` for an entry that is not sparse.
/// Pure.
pub(crate) fn pax_layout<'r>(
    records: impl IntoIterator<Item = (&'r str, &'r str)>,
) -> Result<Option<SparseLayout>, SparseError> {
    let number = |key: &str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| SparseError::NotANumber {
                key: key.to_string(),
                value: value.chars().take(40).collect(),
            })
    };
    let (mut major, mut minor) = (None, None);
    let (mut size, mut real_size, mut name, mut map) = (None, None, None, None);
    // 0.0 lists each chunk as an offset record followed by a numbytes record.
    let mut listed = Vec::new();
    let mut pending_offset = None;
    let mut sparse = false;
    for (key, value) in records {
        let Some(field) = key.strip_prefix("GNU.sparse.") else {
            continue;
        };
        sparse = true;
        match field {
            "major" => major = Some(value.to_string()),
            "minor" => minor = Some(value.to_string()),
            "size" => size = Some(number(key, value)?),
            "realsize" => real_size = Some(number(key, value)?),
            "name" => name = Some(PathBuf::from(value)),
            "map" => map = Some(value.to_string()),
            "offset" if pending_offset.replace(number(key, value)?).is_some() => {
                return Err(SparseError::UnpairedChunk);
            }
            "offset" => {}
            "numbytes" => {
                let offset = pending_offset.take().ok_or(SparseError::UnpairedChunk)?;
                push_chunk(&mut listed, offset, number(key, value)?)?;
            }
            // numblocks only repeats what the list says.
            _ => {}
        }
    }
    if !sparse {
        return Ok(None);
    }
    if pending_offset.is_some() {
        return Err(SparseError::UnpairedChunk);
    }
    let size = real_size.or(size).ok_or(SparseError::NoSize)?;
    let chunks = match (major.as_deref(), minor.as_deref()) {
        (Some("1"), Some("0")) => PaxChunks::MapInContent,
        (None, None) => {
            if let Some(map) = map {
                listed = parse_map_list(&map)?;
            }
            PaxChunks::Listed(listed)
        }
        _ => {
            return Err(SparseError::UnknownVersion {
                major: major.unwrap_or_default(),
                minor: minor.unwrap_or_default(),
            })
        }
    };
    Ok(Some(SparseLayout { size, name, chunks }))
}

fn push_chunk(chunks: &mut Vec<Chunk>, offset: u64, length: u64) -> Result<(), SparseError> {
    if chunks.len() == MAX_CHUNKS {
        return Err(SparseError::TooManyChunks);
    }
    chunks.push(Chunk { offset, length });
    Ok(())
}

/// 0.1's `GNU.sparse.map`: `offset,length,offset,length,…`. Pure.
fn parse_map_list(map: &str) -> Result<Vec<Chunk>, SparseError> {
    let mut numbers = map.split(',').map(|n| {
        n.trim().parse::<u64>().map_err(|_| {
            SparseError::MalformedMap("GNU.sparse.map holds something other than numbers")
        })
    });
    let mut chunks = Vec::new();
    while let Some(offset) = numbers.next() {
        let length = numbers.next().ok_or(SparseError::UnpairedChunk)?;
        push_chunk(&mut chunks, offset?, length?)?;
    }
    Ok(chunks)
}

/// Reads 1.0's map from the start of `content`: the number of chunks, then
/// an offset and a length per chunk, each a decimal number on its own line,
/// padded with anything to a multiple of 512 bytes. Returns the chunks and
/// the bytes the map took.
pub(crate) fn read_map(content: &mut dyn Read) -> Result<(Vec<Chunk>, u64), MapReadError> {
    let mut reader = MapReader {
        content,
        block: [0; 512],
        at: 512,
        consumed: 0,
    };
    let count = reader.number()?;
    let count = usize::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_CHUNKS)
        .ok_or(MapReadError::Sparse(SparseError::TooManyChunks))?;
    let mut chunks = Vec::with_capacity(count);
    for _ in 0..count {
        let offset = reader.number()?;
        let length = reader.number()?;
        chunks.push(Chunk { offset, length });
    }
    // The data starts at the next 512-byte boundary: the rest of this block.
    Ok((chunks, reader.consumed))
}

/// Why 1.0's map could not be read: the archive, or the map itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MapReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Sparse(#[from] SparseError),
}

struct MapReader<'c> {
    content: &'c mut dyn Read,
    block: [u8; 512],
    /// The next byte of `block` to read; 512 when a new block is needed.
    at: usize,
    /// Bytes of content taken so far, whole blocks.
    consumed: u64,
}

impl MapReader<'_> {
    fn byte(&mut self) -> Result<u8, MapReadError> {
        if self.at == self.block.len() {
            self.content
                .read_exact(&mut self.block)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => MapReadError::Sparse(
                        SparseError::MalformedMap("the entry ends inside its map"),
                    ),
                    _ => MapReadError::Io(e),
                })?;
            self.at = 0;
            self.consumed += 512;
        }
        self.at += 1;
        Ok(self.block[self.at - 1])
    }

    /// One decimal number ended by a newline; at most 20 digits (`u64::MAX`).
    fn number(&mut self) -> Result<u64, MapReadError> {
        let mut value: u64 = 0;
        let mut digits = 0;
        loop {
            match self.byte()? {
                b'\n' if digits > 0 => return Ok(value),
                digit @ b'0'..=b'9' if digits < 20 => {
                    value = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                        .ok_or(SparseError::MalformedMap(
                            "a number in the map is too large",
                        ))?;
                    digits += 1;
                }
                _ => {
                    return Err(SparseError::MalformedMap(
                        "the map holds something other than numbers",
                    )
                    .into())
                }
            }
        }
    }
}

/// Checks `chunks` against the file's `size` and the `carried` bytes of data
/// the entry holds after its map: in order, not overlapping, inside the
/// file, adding up to exactly the data. Pure.
pub(crate) fn check_chunks(chunks: &[Chunk], size: u64, carried: u64) -> Result<(), SparseError> {
    let mut end = 0u64;
    let mut listed = 0u64;
    for chunk in chunks {
        let &Chunk { offset, length } = chunk;
        let past = SparseError::PastTheEnd {
            offset,
            length,
            size,
        };
        let chunk_end = offset.checked_add(length).ok_or(past.clone())?;
        if chunk_end > size {
            return Err(past);
        }
        if offset < end && length > 0 {
            return Err(SparseError::OutOfOrder { offset, length });
        }
        end = end.max(chunk_end);
        listed = listed.saturating_add(length);
    }
    match listed == carried {
        true => Ok(()),
        false => Err(SparseError::DataMismatch { listed, carried }),
    }
}

/// Blocks of this size that hold only zeros are skipped, not written: the
/// file systems' block size, so that a skipped block is a block not allocated.
pub(crate) const HOLE_BLOCK: usize = 4096;

/// Writes `data` (part of a sparse file whose holes came filled in as zeros)
/// at `file`'s offset, seeking over each all-zero block instead of writing
/// it. The caller gives the file its final length, which makes a hole of a
/// last skipped block.
pub(crate) fn write_leaving_holes(file: &mut fs::File, data: &[u8]) -> io::Result<()> {
    for block in data.chunks(HOLE_BLOCK) {
        if block.iter().fold(0, |any, byte| any | byte) == 0 {
            file.seek(SeekFrom::Current(block.len() as i64))?;
        } else {
            file.write_all(block)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, length: u64) -> Chunk {
        Chunk { offset, length }
    }

    #[test]
    fn pax_records_name_the_layout_of_each_version() {
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, &'a str)>,
            Result<Option<SparseLayout>, SparseError>,
        );
        let cases: Vec<Case> = vec![
            (
                "not sparse",
                vec![("path", "a/b"), ("mtime", "1")],
                Ok(None),
            ),
            (
                "0.0",
                vec![
                    ("GNU.sparse.size", "1073741824"),
                    ("GNU.sparse.numblocks", "2"),
                    ("GNU.sparse.offset", "4997120"),
                    ("GNU.sparse.numbytes", "4096"),
                    ("GNU.sparse.offset", "1073741824"),
                    ("GNU.sparse.numbytes", "0"),
                ],
                Ok(Some(SparseLayout {
                    size: 1 << 30,
                    name: None,
                    chunks: PaxChunks::Listed(vec![chunk(4_997_120, 4096), chunk(1 << 30, 0)]),
                })),
            ),
            (
                "0.1",
                vec![
                    ("GNU.sparse.size", "1073741824"),
                    ("GNU.sparse.numblocks", "2"),
                    ("GNU.sparse.name", "d/big"),
                    ("GNU.sparse.map", "4997120,4096,1073741824,0"),
                ],
                Ok(Some(SparseLayout {
                    size: 1 << 30,
                    name: Some(PathBuf::from("d/big")),
                    chunks: PaxChunks::Listed(vec![chunk(4_997_120, 4096), chunk(1 << 30, 0)]),
                })),
            ),
            (
                "1.0",
                vec![
                    ("GNU.sparse.major", "1"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.name", "d/big"),
                    ("GNU.sparse.realsize", "1073741824"),
                ],
                Ok(Some(SparseLayout {
                    size: 1 << 30,
                    name: Some(PathBuf::from("d/big")),
                    chunks: PaxChunks::MapInContent,
                })),
            ),
            (
                "a version not known",
                vec![
                    ("GNU.sparse.major", "2"),
                    ("GNU.sparse.minor", "0"),
                    ("GNU.sparse.realsize", "1"),
                ],
                Err(SparseError::UnknownVersion {
                    major: "2".into(),
                    minor: "0".into(),
                }),
            ),
            (
                "no size",
                vec![("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")],
                Err(SparseError::NoSize),
            ),
            (
                "a size past u64",
                vec![("GNU.sparse.size", "18446744073709551616")],
                Err(SparseError::NotANumber {
                    key: "GNU.sparse.size".into(),
                    value: "18446744073709551616".into(),
                }),
            ),
            (
                "an offset without its length",
                vec![("GNU.sparse.size", "10"), ("GNU.sparse.offset", "0")],
                Err(SparseError::UnpairedChunk),
            ),
            (
                "a map of odd length",
                vec![("GNU.sparse.size", "10"), ("GNU.sparse.map", "0,1,5")],
                Err(SparseError::UnpairedChunk),
            ),
            (
                "a map of words",
                vec![("GNU.sparse.size", "10"), ("GNU.sparse.map", "0,x")],
                Err(SparseError::MalformedMap(
                    "GNU.sparse.map holds something other than numbers",
                )),
            ),
        ];
        for (what, records, expected) in cases {
            assert_eq!(pax_layout(records), expected, "{what}");
        }
    }

    #[test]
    fn a_map_of_too_many_chunks_is_refused_before_it_is_held() {
        let map = vec!["1,1"; MAX_CHUNKS + 1].join(",");
        assert_eq!(
            pax_layout([("GNU.sparse.size", "10"), ("GNU.sparse.map", map.as_str())]),
            Err(SparseError::TooManyChunks)
        );
        let mut map = format!("{}\n", MAX_CHUNKS + 1).into_bytes();
        map.resize(512, 0);
        let mut content = io::Cursor::new(map);
        assert!(matches!(
            read_map(&mut content),
            Err(MapReadError::Sparse(SparseError::TooManyChunks))
        ));
    }

    #[test]
    fn the_map_of_version_1_is_read_from_the_content_up_to_its_padding() {
        let mut content = b"2\n4997120\n4096\n1073741824\n0\n".to_vec();
        content.resize(512, 0);
        content.extend_from_slice(b"DATA");
        let mut reader = io::Cursor::new(content);
        let (chunks, consumed) = read_map(&mut reader).expect("a valid map");
        assert_eq!(chunks, vec![chunk(4_997_120, 4096), chunk(1 << 30, 0)]);
        assert_eq!(consumed, 512);
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("the data");
        assert_eq!(rest, "DATA");

        for (map, padded_to, why) in [
            (&b"1\n0\n"[..], 4, "the entry ends inside its map"),
            (b"1\n0\n", 512, "the map holds something other than numbers"),
            (
                b"1\nx\n1\n",
                512,
                "the map holds something other than numbers",
            ),
            (b"\n", 512, "the map holds something other than numbers"),
            (
                b"1\n99999999999999999999\n1\n",
                512,
                "a number in the map is too large",
            ),
        ] {
            let mut padded = map.to_vec();
            padded.resize(padded_to, 0);
            match read_map(&mut io::Cursor::new(padded)) {
                Err(MapReadError::Sparse(SparseError::MalformedMap(reason))) => {
                    assert_eq!(reason, why, "{map:?}")
                }
                other => panic!("{map:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn chunks_must_be_ordered_inside_the_file_and_add_up_to_the_data() {
        let cases = [
            (
                vec![chunk(0, 10), chunk(20, 5), chunk(100, 0)],
                100,
                15,
                Ok(()),
            ),
            (vec![], 1 << 40, 0, Ok(())),
            (
                vec![chunk(10, 10), chunk(15, 10)],
                100,
                20,
                Err(SparseError::OutOfOrder {
                    offset: 15,
                    length: 10,
                }),
            ),
            (
                vec![chunk(20, 1), chunk(10, 1)],
                100,
                2,
                Err(SparseError::OutOfOrder {
                    offset: 10,
                    length: 1,
                }),
            ),
            (
                vec![chunk(95, 10)],
                100,
                10,
                Err(SparseError::PastTheEnd {
                    offset: 95,
                    length: 10,
                    size: 100,
                }),
            ),
            (
                vec![chunk(u64::MAX, 2)],
                u64::MAX,
                2,
                Err(SparseError::PastTheEnd {
                    offset: u64::MAX,
                    length: 2,
                    size: u64::MAX,
                }),
            ),
            (
                vec![chunk(0, 10)],
                100,
                11,
                Err(SparseError::DataMismatch {
                    listed: 10,
                    carried: 11,
                }),
            ),
        ];
        for (chunks, size, carried, expected) in cases {
            assert_eq!(check_chunks(&chunks, size, carried), expected, "{chunks:?}");
        }
    }

    #[test]
    fn zero_blocks_become_holes_and_data_stays_whole() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut expanded = vec![0u8; 32 << 20];
        expanded[5_000_000..5_000_006].copy_from_slice(b"hello\n");
        // A last partial block of zeros still counts in the size.
        expanded.extend_from_slice(&[0; 100]);
        let path = dir.path().join("expanded");
        let mut file = fs::File::create(&path).expect("a file");
        for part in expanded.chunks(100_000) {
            write_leaving_holes(&mut file, part).expect("written");
        }
        file.set_len(expanded.len() as u64).expect("the length");
        assert_eq!(fs::read(&path).expect("read back"), expanded);
        let allocated = file.metadata().expect("metadata").blocks() * 512;
        assert!(allocated <= 64 * 1024, "{allocated} bytes allocated");
    }
}
