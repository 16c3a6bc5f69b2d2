//! A minimal reader for the zip archives `torch.save` writes: entries found through the central
//! directory (with or without ZIP64 records), and only stored (uncompressed) ones read, which is
//! all PyTorch writes. Every offset and size is checked against the file, so a truncated or
//! hostile archive gives an error that says what is wrong rather than a panic.

use std::borrow::Cow;
use std::collections::HashMap;

use super::pickle::Result;

/// A local file header's signature, which starts every non-empty zip archive.
pub(super) const MAGIC: &[u8] = b"PK\x03\x04";
const CENTRAL_HEADER: &[u8] = b"PK\x01\x02";
const END: &[u8] = b"PK\x05\x06";
const ZIP64_END: &[u8] = b"PK\x06\x06";
const ZIP64_LOCATOR: &[u8] = b"PK\x06\x07";
/// Sizes of the fixed parts of the records above.
const LOCAL_LEN: usize = 30;
const CENTRAL_LEN: usize = 46;
const END_LEN: usize = 22;
const ZIP64_END_LEN: usize = 56;
const ZIP64_LOCATOR_LEN: usize = 20;
/// The extra field that holds an entry's 64-bit sizes and offset.
const ZIP64_EXTRA: u16 = 0x0001;

/// One entry as the central directory describes it.
struct Entry {
    method: u16,
    flags: u16,
    compressed: u64,
    size: u64,
    header: u64,
}

/// The entries of an archive held in memory, by name.
pub(super) struct Archive<'a> {
    bytes: &'a [u8],
    first: Option<&'a [u8]>,
    entries: HashMap<&'a [u8], Entry>,
}

fn u16_at<const L: usize>(record: &[u8; L], at: usize) -> u16 {
    u16::from_le_bytes([record[at], record[at + 1]])
}

fn u32_at<const L: usize>(record: &[u8; L], at: usize) -> u32 {
    u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]])
}

fn u64_at<const L: usize>(record: &[u8; L], at: usize) -> u64 {
    let low = u64::from(u32_at(record, at));
    low | u64::from(u32_at(record, at + 4)) << 32
}

/// `len` bytes at `at`, or None when they are not all inside `bytes`.
fn slice(bytes: &[u8], at: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(at).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..)?.get(..len)
}

/// The fixed part of the record `what` at `at`, checked to start with `signature`.
fn record<'a, const L: usize>(
    bytes: &'a [u8],
    at: u64,
    signature: &[u8],
    what: &str,
) -> Result<&'a [u8; L]> {
    let found = slice(bytes, at, L as u64).and_then(|r| r.first_chunk::<L>());
    let found = found.ok_or(format!("the {what} at byte {at} is truncated"))?;
    if !found.starts_with(signature) {
        return Err(format!("no {what} at byte {at}"));
    }
    Ok(found)
}

/// An entry name (bytes, which torch writes as UTF-8) for messages.
pub(super) fn display(name: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(name)
}

/// Where the central directory lies and how many entries it lists.
struct Directory {
    offset: u64,
    size: u64,
    entries: u64,
}

/// Reads the end of central directory record (found from the end, past any comment) and, when
/// a ZIP64 locator precedes it, the ZIP64 one that supersedes it.
fn directory(bytes: &[u8]) -> Result<Directory> {
    let fits = |&at: &usize| {
        let Some(end) = bytes.get(at..).and_then(|r| r.first_chunk::<END_LEN>()) else {
            return false;
        };
        end.starts_with(END) && END_LEN + usize::from(u16_at(end, 20)) <= bytes.len() - at
    };
    let last = bytes.len().saturating_sub(END_LEN);
    let first = last.saturating_sub(usize::from(u16::MAX));
    let at = (first..=last)
        .rev()
        .find(fits)
        .ok_or("no end of central directory record: the file is truncated or not a zip archive")?;
    let end: &[u8; END_LEN] = record(bytes, at as u64, END, "end of central directory")?;
    let mut dir = Directory {
        offset: u32_at(end, 16).into(),
        size: u32_at(end, 12).into(),
        entries: u16_at(end, 10).into(),
    };
    let mut disks = [u32::from(u16_at(end, 4)), u32::from(u16_at(end, 6))];
    let locator_at = at.checked_sub(ZIP64_LOCATOR_LEN);
    let locator = locator_at.and_then(|l| bytes.get(l..)?.first_chunk::<ZIP64_LOCATOR_LEN>());
    if let Some(locator) = locator.filter(|l| l.starts_with(ZIP64_LOCATOR)) {
        let what = "ZIP64 end of central directory";
        let end: &[u8; ZIP64_END_LEN] = record(bytes, u64_at(locator, 8), ZIP64_END, what)?;
        dir = Directory {
            offset: u64_at(end, 48),
            size: u64_at(end, 40),
            entries: u64_at(end, 32),
        };
        disks = [u32_at(end, 16), u32_at(end, 20)];
    }
    if disks != [0, 0] {
        return Err("the archive spans several disks, which this reader does not support".into());
    }
    Ok(dir)
}

/// An entry's 64-bit sizes and header offset from its ZIP64 extra field: each is there only
/// when the central directory's 32-bit field holds 0xffffffff.
fn widen(entry: &mut Entry, mut extra: &[u8], name: &[u8]) -> Result<()> {
    let bad = || format!("entry `{}` has a damaged extra field", display(name));
    while let Some((head, rest)) = extra.split_first_chunk::<4>() {
        let (id, len) = (u16_at(head, 0), usize::from(u16_at(head, 2)));
        let (data, rest) = rest.split_at_checked(len).ok_or_else(bad)?;
        extra = rest;
        if id != ZIP64_EXTRA {
            continue;
        }
        let mut values = data
            .chunks_exact(8)
            .map(|c| c.try_into().map(u64::from_le_bytes));
        for field in [&mut entry.size, &mut entry.compressed, &mut entry.header] {
            if *field == u64::from(u32::MAX) {
                *field = values.next().and_then(|v| v.ok()).ok_or_else(bad)?;
            }
        }
    }
    Ok(())
}

impl<'a> Archive<'a> {
    /// Lists the entries of the archive `bytes`; their data is only checked when read.
    pub fn open(bytes: &'a [u8]) -> Result<Archive<'a>> {
        let dir = directory(bytes)?;
        let end = dir.offset.checked_add(dir.size);
        let listing = slice(bytes, dir.offset, dir.size).ok_or(format!(
            "the central directory (bytes {}..{}) lies outside the {}-byte file: it is truncated",
            dir.offset,
            end.map_or("overflow".into(), |e| e.to_string()),
            bytes.len()
        ))?;
        let mut archive = Archive {
            bytes,
            first: None,
            entries: HashMap::new(),
        };
        let mut at = 0u64;
        // Each entry takes at least CENTRAL_LEN bytes of the listing, so a hostile count ends
        // in an error rather than a long loop.
        for i in 0..dir.entries {
            let what = format!("central directory entry {i}");
            let header: &[u8; CENTRAL_LEN] = record(listing, at, CENTRAL_HEADER, &what)?;
            let lens = [28, 30, 32].map(|field| u64::from(u16_at(header, field)));
            let variable = slice(listing, at + CENTRAL_LEN as u64, lens.iter().sum());
            let variable = variable.ok_or(format!("the {what} is truncated"))?;
            let (name, rest) = variable.split_at(lens[0] as usize);
            let extra = &rest[..lens[1] as usize];
            at += CENTRAL_LEN as u64 + lens.iter().sum::<u64>();
            let mut entry = Entry {
                method: u16_at(header, 10),
                flags: u16_at(header, 8),
                compressed: u32_at(header, 20).into(),
                size: u32_at(header, 24).into(),
                header: u32_at(header, 42).into(),
            };
            widen(&mut entry, extra, name)?;
            if archive.entries.insert(name, entry).is_some() {
                return Err(format!("two entries are named `{}`", display(name)));
            }
            archive.first = archive.first.or(Some(name));
        }
        Ok(archive)
    }

    /// The name of the first entry the central directory lists.
    pub fn first_name(&self) -> Option<&'a [u8]> {
        self.first
    }

    /// The data of entry `name`, or None when there is no such entry.
    pub fn read(&self, name: &[u8]) -> Result<Option<&'a [u8]>> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        let shown = display(name);
        if entry.flags & 1 != 0 {
            return Err(format!("entry `{shown}` is encrypted"));
        }
        if entry.method != 0 {
            return Err(format!(
                "entry `{shown}` is compressed (method {}): only stored (uncompressed) entries, \
                 as torch.save writes them, are supported",
                entry.method
            ));
        }
        if entry.compressed != entry.size {
            return Err(format!(
                "entry `{shown}` is stored in {} bytes but says it holds {}",
                entry.compressed, entry.size
            ));
        }
        let what = format!("local header of `{shown}`");
        let local: &[u8; LOCAL_LEN] = record(self.bytes, entry.header, MAGIC, &what)?;
        let (name_len, extra_len) = (u16_at(local, 26), u16_at(local, 28));
        // Both lie inside the file, so these sums cannot overflow.
        let local_name = slice(self.bytes, entry.header + LOCAL_LEN as u64, name_len.into());
        if local_name.is_some_and(|n| n != name) {
            return Err(format!("the {what} names another entry"));
        }
        let start = entry.header + LOCAL_LEN as u64 + u64::from(name_len) + u64::from(extra_len);
        let data = slice(self.bytes, start, entry.size).ok_or(format!(
            "entry `{shown}` ({} bytes from byte {start}) runs past the end of the {}-byte \
             file: it is truncated",
            entry.size,
            self.bytes.len()
        ))?;
        Ok(Some(data))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::Archive;

    /// Writes a stored zip archive as torch's miniz writer does (local headers with zeroed sizes
    /// and a data descriptor flag, sizes in the central directory), optionally with every size
    /// and offset moved to ZIP64 extra fields and a ZIP64 end record, and a comment.
    pub(in crate::backbone::pth) fn write(
        entries: &[(&str, &[u8])],
        zip64: bool,
        comment: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let header = out.len() as u32;
            out.extend(b"PK\x03\x04\x00\x00\x08\x08\x00\x00");
            out.extend([0; 16]); // time, date, crc, sizes
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(4u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(b"FB\x00\x00"); // an empty padding field, as torch's alignment writes
            out.extend(*data);
            central.extend(b"PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00");
            central.extend([0; 8]); // time, date, crc
            let mut extra = Vec::new();
            let fields: [u32; 3] = if zip64 {
                extra.extend(1u16.to_le_bytes());
                extra.extend(24u16.to_le_bytes());
                for value in [data.len() as u64, data.len() as u64, header as u64] {
                    extra.extend(value.to_le_bytes());
                }
                [u32::MAX; 3]
            } else {
                [data.len() as u32, data.len() as u32, header]
            };
            central.extend(fields[0].to_le_bytes());
            central.extend(fields[1].to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend((extra.len() as u16).to_le_bytes());
            central.extend([0; 10]); // comment length, disk, attributes
            central.extend(fields[2].to_le_bytes());
            central.extend(name.as_bytes());
            central.extend(extra);
        }
        let (offset, size, n) = (out.len() as u64, central.len() as u64, entries.len() as u64);
        out.extend(central);
        if zip64 {
            let end64 = out.len() as u64;
            out.extend(b"PK\x06\x06");
            out.extend(44u64.to_le_bytes());
            out.extend([0x1e, 3, 0x2d, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // versions, disks
            for value in [n, n, size, offset] {
                out.extend(value.to_le_bytes());
            }
            out.extend(b"PK\x06\x07\x00\x00\x00\x00");
            out.extend(end64.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(b"PK\x05\x06\x00\x00\x00\x00");
        let (n, size, offset) = if zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (n as u16, size as u32, offset as u32)
        };
        out.extend(n.to_le_bytes());
        out.extend(n.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(offset.to_le_bytes());
        out.extend((comment.len() as u16).to_le_bytes());
        out.extend(comment);
        out
    }

    const ENTRIES: [(&str, &[u8]); 3] = [
        ("archive/data.pkl", b"\x80\x02}."),
        ("archive/data/0", &[7; 24]),
        ("archive/version", b"3\n"),
    ];

    #[test]
    fn reads_entries_with_and_without_zip64() -> super::Result<()> {
        for (zip64, comment) in [
            (false, &b""[..]),
            (true, b""),
            (true, b"PK\x05\x06 comment"),
        ] {
            let bytes = write(&ENTRIES, zip64, comment);
            let archive = Archive::open(&bytes)?;
            assert_eq!(archive.first_name(), Some(&b"archive/data.pkl"[..]));
            for (name, data) in ENTRIES {
                assert_eq!(archive.read(name.as_bytes())?, Some(data), "{name}");
            }
            assert_eq!(archive.read(b"archive/data/1")?, None);
        }
        Ok(())
    }

    #[test]
    fn damaged_archives_give_errors() {
        let err = |bytes: &[u8], name: &[u8]| {
            Archive::open(bytes)
                .and_then(|a| a.read(name))
                .err()
                .unwrap_or_default()
        };
        for zip64 in [false, true] {
            let bytes = write(&ENTRIES, zip64, b"");
            // Every prefix fails, and no single corrupted byte panics.
            for n in 0..bytes.len() {
                let prefix = &bytes[..n];
                let read = Archive::open(prefix).and_then(|a| a.read(b"archive/data/0"));
                assert!(read.is_err(), "{n}-byte prefix was read");
            }
            let mut damaged = bytes.clone();
            for i in 0..bytes.len() {
                for value in [bytes[i] ^ 1, bytes[i] ^ 0x80, 0xff, 0] {
                    damaged[i] = value;
                    if let Ok(archive) = Archive::open(&damaged) {
                        for (name, _) in ENTRIES {
                            let _ = archive.read(name.as_bytes());
                        }
                    }
                }
                damaged[i] = bytes[i];
            }
        }
        let bytes = write(&ENTRIES, false, b"");
        assert!(err(&bytes[..bytes.len() - 1], b"").starts_with("no end of central directory"));
        // Where the central directory entry of ENTRIES[i] starts.
        let central = |i: usize| {
            let mut at = bytes
                .windows(4)
                .enumerate()
                .filter(|(_, w)| w.starts_with(b"PK\x01\x02"));
            at.nth(i).map_or(0, |(at, _)| at)
        };
        let mut compressed = bytes.clone();
        compressed[central(1) + 10] = 8; // deflate
        assert_eq!(
            err(&compressed, b"archive/data/0"),
            "entry `archive/data/0` is compressed (method 8): only stored (uncompressed) \
             entries, as torch.save writes them, are supported"
        );
        let mut long = bytes.clone();
        long[central(2) + 20..central(2) + 28].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        let msg = err(&long, b"archive/version");
        assert!(
            msg.starts_with("entry `archive/version` (16777216 bytes from byte "),
            "{msg}"
        );
        assert!(msg.ends_with("it is truncated"), "{msg}");
        let mut moved = bytes.clone();
        moved[central(2) + 42] += 1;
        assert!(err(&moved, b"archive/version").starts_with("no local header of `archive/version`"));
        let twice = write(&[ENTRIES[0], ENTRIES[0]], false, b"");
        assert_eq!(err(&twice, b""), "two entries are named `archive/data.pkl`");
    }
}
