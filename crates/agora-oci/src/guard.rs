//! A reader that follows the tar framing of a layer stream just far enough to refuse oversized
//! metadata entries (GNU long names and links, pax headers) before the `tar` crate reads them
//! into memory whole: a few compressed megabytes could otherwise claim gigabytes of "name".

use std::io::{self, Read};

/// Largest GNU long name/link or pax header accepted.
pub(crate) const MAX_METADATA: u64 = 1 << 20;

const BLOCK: usize = 512;

enum State {
    /// Collecting a 512-byte header.
    Header {
        buf: Box<[u8; BLOCK]>,
        filled: usize,
    },
    /// Passing `left` bytes of entry data and padding.
    Data { left: u64 },
    /// Collecting a pax header's records (`len` bytes, then `pad` padding).
    Pax {
        records: Vec<u8>,
        len: usize,
        pad: u64,
    },
    /// After the end-of-archive block: everything passes.
    Trailer,
}

/// Wraps the decompressed layer stream; see the module docs.
pub(crate) struct TarGuard<R> {
    inner: R,
    state: State,
    /// A pax `size` that overrides the next member's header size.
    pax_size: Option<u64>,
    violation: Option<String>,
}

impl<R: Read> TarGuard<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            state: new_header(),
            pax_size: None,
            violation: None,
        }
    }

    /// Why the stream was refused, if it was.
    pub(crate) fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Advances the framing over `bytes`, which were just read.
    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let taken = match &mut self.state {
                State::Header { buf, filled } => {
                    let n = (BLOCK - *filled).min(bytes.len());
                    buf[*filled..*filled + n].copy_from_slice(&bytes[..n]);
                    *filled += n;
                    if *filled == BLOCK {
                        let header = **buf;
                        self.state = self.after_header(&header)?;
                    }
                    n
                }
                State::Data { left } => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.state = new_header();
                    }
                    n as usize
                }
                State::Pax { records, len, pad } => {
                    let n = (*len - records.len()).min(bytes.len());
                    records.extend_from_slice(&bytes[..n]);
                    if records.len() == *len {
                        self.pax_size = pax_size(records);
                        let pad = *pad;
                        self.state = if pad == 0 {
                            new_header()
                        } else {
                            State::Data { left: pad }
                        };
                    }
                    n
                }
                State::Trailer => bytes.len(),
            };
            bytes = &bytes[taken..];
        }
        Ok(())
    }

    fn after_header(&mut self, header: &[u8; BLOCK]) -> Result<State, String> {
        if header.iter().all(|&b| b == 0) {
            return Ok(State::Trailer);
        }
        let kind = header[156];
        let mut size = header_size(header).ok_or("unreadable size field in a tar header")?;
        if matches!(kind, b'L' | b'K' | b'x' | b'g') {
            if size > MAX_METADATA {
                return Err(format!(
                    "a tar metadata entry (type {:?}) of {size} bytes exceeds {MAX_METADATA}",
                    kind as char
                ));
            }
        } else if let Some(pax) = self.pax_size.take() {
            size = pax;
        }
        if kind == b'S' {
            return Err("sparse files are not supported".into());
        }
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(match kind {
            b'x' if size > 0 => State::Pax {
                records: Vec::new(),
                len: size as usize,
                pad: padded - size,
            },
            _ if padded == 0 => new_header(),
            _ => State::Data { left: padded },
        })
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(why) = self.observe(&buf[..n]) {
            self.violation = Some(why.clone());
            return Err(io::Error::other(why));
        }
        Ok(n)
    }
}

fn new_header() -> State {
    State::Header {
        buf: Box::new([0; BLOCK]),
        filled: 0,
    }
}

/// The size field (bytes 124..136) read the way the `tar` crate reads it: GNU base-256 when
/// the top bit is set, else octal text up to the first NUL, whitespace trimmed.
fn header_size(header: &[u8; BLOCK]) -> Option<u64> {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        return Some(
            field[1..]
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        );
    }
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?.trim();
    u64::from_str_radix(text, 8).ok()
}

/// The first `size` record of a pax header (`"<len> <key>=<value>\n"` records), as the `tar`
/// crate applies it to the next member.
fn pax_size(mut records: &[u8]) -> Option<u64> {
    while !records.is_empty() {
        let space = records.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&records[..space]).ok()?.parse().ok()?;
        let record = records.get(space + 1..len)?.strip_suffix(b"\n")?;
        if let Some(value) = record.strip_prefix(b"size=") {
            return std::str::from_utf8(value).ok()?.parse().ok();
        }
        records = &records[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all_through_guard(bytes: &[u8]) -> (io::Result<Vec<u8>>, Option<String>) {
        let mut guard = TarGuard::new(bytes);
        let mut out = Vec::new();
        let result = guard.read_to_end(&mut out).map(|_| out);
        (result, guard.violation().map(str::to_owned))
    }

    fn entries_through_guard(bytes: &[u8]) -> Vec<(String, u64)> {
        let mut archive = tar::Archive::new(TarGuard::new(bytes));
        let entries = archive.entries().unwrap();
        entries
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    e.size(),
                )
            })
            .collect()
    }

    #[test]
    fn passes_long_names_pax_and_large_files() {
        let long = format!("{}/file", "d".repeat(300));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        builder
            .append_data(&mut header, &long, &b"abc"[..])
            .unwrap();
        builder
            .append_pax_extensions([("path", b"pax/named".as_slice()), ("size", b"5".as_slice())])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_size(5);
        builder
            .append_data(&mut header, "ignored", &b"12345"[..])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(70_000);
        builder
            .append_data(&mut header, "big", &vec![9u8; 70_000][..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        let (result, violation) = read_all_through_guard(&tar);
        assert_eq!(result.unwrap(), tar);
        assert_eq!(violation, None);
        let entries = entries_through_guard(&tar);
        assert_eq!(
            entries,
            vec![(long, 3), ("pax/named".into(), 5), ("big".into(), 70_000)]
        );
    }

    #[test]
    fn refuses_huge_long_names() {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::GNULongName);
        header.set_size(MAX_METADATA + 1);
        header.set_cksum();
        let mut stream = header.as_bytes().to_vec();
        stream.extend_from_slice(&[b'a'; 4096]);
        let (result, violation) = read_all_through_guard(&stream);
        assert!(result.is_err());
        assert!(violation.unwrap().contains("metadata entry"));
    }

    #[test]
    fn parses_size_fields() {
        let mut header = [0u8; BLOCK];
        header[124..136].copy_from_slice(b"00000001750\0");
        assert_eq!(header_size(&header), Some(0o1750));
        header[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(header_size(&header), Some(256));
        assert_eq!(pax_size(b"11 size=99\n20 path=a/b/c/d/e/f\n"), Some(99));
        assert_eq!(pax_size(b"20 path=a/b/c/d/e/f\n11 size=42\n"), Some(42));
        assert_eq!(pax_size(b"15 path=a\nsize\n"), None);
        let mut header = [0u8; BLOCK];
        header[124..136].copy_from_slice(b" 17 \0garbage");
        assert_eq!(header_size(&header), Some(0o17));
    }
}
