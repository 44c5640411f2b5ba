//! The spill file: sorted runs of combiner entries, lz4-compressed, in one anonymous temporary
//! file (removed by the OS when closed, so a crash leaves nothing behind).
//!
//! A run is a sequence of blocks, each `[u32 LE compressed length][lz4 block with its
//! uncompressed size prepended]`. A block holds whole entries, in key order:
//! `[varint key length][packed key][u8 1 if a front document follows][front]
//! [varint document count][documents]`. Documents are in a compact binary form that keeps
//! numbers exact (u64, i64 and the bits of f64), unlike a round trip through JSON text.
//! Runs are read back one block at a time, so a drain holds one block per run in memory.

use super::Entry;
use serde_json::{Map, Number, Value};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Uncompressed bytes gathered before a block is compressed and written: big enough for lz4 to
/// find repetition across documents, small enough that a drain of many runs holds little.
const BLOCK_BYTES_TARGET: usize = 256 << 10;

/// Largest block a reader accepts: a guard against reading a corrupt length.
const BLOCK_BYTES_MAX: usize = 1 << 30;

pub(super) struct SpillFile {
    file: File,
    len: u64,
    /// (start, end) byte offsets of each run, oldest first.
    pub runs: Vec<(u64, u64)>,
}

impl SpillFile {
    pub fn new() -> io::Result<SpillFile> {
        Ok(SpillFile {
            file: tempfile::tempfile()?,
            len: 0,
            runs: Vec::new(),
        })
    }

    /// Write one run of entries, which must come in key order.
    pub fn write_run<'e>(
        &mut self,
        entries: impl Iterator<Item = (&'e [u8], &'e Entry)>,
    ) -> io::Result<()> {
        let start = self.len;
        let mut out = io::BufWriter::new(&mut self.file);
        out.seek(SeekFrom::Start(start))?;
        let mut block = Vec::with_capacity(BLOCK_BYTES_TARGET + 4096);
        let mut written = 0u64;
        let mut flush =
            |block: &mut Vec<u8>, out: &mut io::BufWriter<&mut File>| -> io::Result<()> {
                let compressed = lz4_flex::compress_prepend_size(block);
                out.write_all(&(compressed.len() as u32).to_le_bytes())?;
                out.write_all(&compressed)?;
                written += 4 + compressed.len() as u64;
                block.clear();
                Ok(())
            };
        for (key, entry) in entries {
            write_varint(key.len() as u64, &mut block);
            block.extend_from_slice(key);
            match &entry.front {
                Some(front) => {
                    block.push(1);
                    write_value(front, &mut block);
                }
                None => block.push(0),
            }
            write_varint(entry.docs.len() as u64, &mut block);
            for doc in &entry.docs {
                write_value(doc, &mut block);
            }
            if block.len() >= BLOCK_BYTES_TARGET {
                flush(&mut block, &mut out)?;
            }
        }
        if !block.is_empty() {
            flush(&mut block, &mut out)?;
        }
        out.flush()?;
        drop(out);
        self.len = start + written;
        self.runs.push((start, self.len));
        Ok(())
    }

    pub fn into_parts(self) -> (File, Vec<(u64, u64)>) {
        (self.file, self.runs)
    }
}

/// Reads the entries of one run, a block at a time.
pub(super) struct RunReader {
    next: u64,
    end: u64,
    block: Vec<u8>,
    pos: usize,
}

impl RunReader {
    pub fn new((start, end): (u64, u64)) -> RunReader {
        RunReader {
            next: start,
            end,
            block: Vec::new(),
            pos: 0,
        }
    }

    /// The next entry of the run, with its packed key.
    pub fn next(&mut self, file: &mut File) -> io::Result<Option<(Vec<u8>, Entry)>> {
        if self.pos >= self.block.len() {
            if self.next >= self.end {
                return Ok(None);
            }
            file.seek(SeekFrom::Start(self.next))?;
            let mut len = [0u8; 4];
            file.read_exact(&mut len)?;
            let len = u32::from_le_bytes(len) as usize;
            if len > BLOCK_BYTES_MAX {
                return Err(corrupt("block length"));
            }
            let mut compressed = vec![0u8; len];
            file.read_exact(&mut compressed)?;
            self.block =
                lz4_flex::decompress_size_prepended(&compressed).map_err(|_| corrupt("block"))?;
            self.pos = 0;
            self.next += 4 + len as u64;
        }
        let b = &self.block;
        let p = &mut self.pos;
        let key_len = read_varint(b, p)? as usize;
        let key = b
            .get(*p..*p + key_len)
            .ok_or_else(|| corrupt("key"))?
            .to_vec();
        *p += key_len;
        let has_front = *b.get(*p).ok_or_else(|| corrupt("entry"))?;
        *p += 1;
        let front = if has_front == 1 {
            Some(read_value(b, p)?)
        } else {
            None
        };
        let count = read_varint(b, p)? as usize;
        let mut docs = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            docs.push(read_value(b, p)?);
        }
        Ok(Some((
            key,
            Entry {
                front,
                docs,
                bytes: 0,
                bytes_exact: 0,
            },
        )))
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt combiner spill {what}"),
    )
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const U64: u8 = 3;
const I64: u8 = 4;
const F64: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

fn write_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_varint(b: &[u8], p: &mut usize) -> io::Result<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*p).ok_or_else(|| corrupt("varint"))?;
        *p += 1;
        n |= ((byte & 0x7F) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(corrupt("varint"))
}

pub(super) fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(U64);
                out.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(I64);
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.push(F64);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            out.push(STRING);
            write_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(ARRAY);
            write_varint(items.len() as u64, out);
            for item in items {
                write_value(item, out);
            }
        }
        Value::Object(m) => {
            out.push(OBJECT);
            write_varint(m.len() as u64, out);
            for (k, v) in m {
                write_varint(k.len() as u64, out);
                out.extend_from_slice(k.as_bytes());
                write_value(v, out);
            }
        }
    }
}

pub(super) fn read_value(b: &[u8], p: &mut usize) -> io::Result<Value> {
    let eight = |p: &mut usize| -> io::Result<[u8; 8]> {
        let s = b.get(*p..*p + 8).ok_or_else(|| corrupt("number"))?;
        *p += 8;
        Ok(s.try_into().expect("eight bytes"))
    };
    let tag = *b.get(*p).ok_or_else(|| corrupt("value"))?;
    *p += 1;
    Ok(match tag {
        NULL => Value::Null,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        U64 => Value::Number(u64::from_le_bytes(eight(p)?).into()),
        I64 => Value::Number(i64::from_le_bytes(eight(p)?).into()),
        F64 => {
            let f = f64::from_bits(u64::from_le_bytes(eight(p)?));
            Value::Number(Number::from_f64(f).ok_or_else(|| corrupt("float"))?)
        }
        STRING => Value::String(read_str(b, p)?),
        ARRAY => {
            let n = read_varint(b, p)? as usize;
            let mut items = Vec::with_capacity(n.min(b.len()));
            for _ in 0..n {
                items.push(read_value(b, p)?);
            }
            Value::Array(items)
        }
        OBJECT => {
            let n = read_varint(b, p)? as usize;
            let mut m = Map::new();
            for _ in 0..n {
                let k = read_str(b, p)?;
                m.insert(k, read_value(b, p)?);
            }
            Value::Object(m)
        }
        _ => return Err(corrupt("value tag")),
    })
}

fn read_str(b: &[u8], p: &mut usize) -> io::Result<String> {
    let n = read_varint(b, p)? as usize;
    let s = b
        .get(*p..p.saturating_add(n))
        .ok_or_else(|| corrupt("string"))?;
    *p += n;
    String::from_utf8(s.to_vec()).map_err(|_| corrupt("string"))
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_round_trip_exactly() {
        let v = json!({
            "u": u64::MAX, "i": i64::MIN, "f": 0.1 + 0.2, "neg0": -0.0, "s": "h\u{0}é",
            "a": [null, true, false, [], {}], "big": 1e300, "tiny": 5e-324,
        });
        let mut out = Vec::new();
        write_value(&v, &mut out);
        let mut p = 0;
        let back = read_value(&out, &mut p).unwrap();
        assert_eq!(p, out.len());
        assert_eq!(back, v);
        assert_eq!(
            back["f"].as_f64().unwrap().to_bits(),
            (0.1f64 + 0.2).to_bits()
        );
        assert!(read_value(&out[..out.len() - 1], &mut 0).is_err());
    }
}
