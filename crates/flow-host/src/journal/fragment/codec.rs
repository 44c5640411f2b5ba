//! Fragment compression: gzip, zstd or none, behind one streaming writer and reader.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// How a fragment's NDJSON is compressed (the catalog's `compressionCodec`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Codec {
    /// gzip (`.ndjson.gz`): read by every tool. The default, as in Flow.
    #[default]
    #[serde(rename = "gzip", alias = "GZIP")]
    Gzip,
    /// Zstandard (`.ndjson.zst`): several times faster to write and read than gzip, and smaller.
    #[serde(rename = "zstd", alias = "ZSTANDARD")]
    Zstd,
    /// Uncompressed (`.ndjson`).
    #[serde(rename = "none", alias = "NONE")]
    None,
}

impl Codec {
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => ".gz",
            Codec::Zstd => ".zst",
            Codec::None => "",
        }
    }

    /// A writer that compresses into a buffer; `finish` returns the file's bytes.
    pub fn encoder(self) -> anyhow::Result<Encoder> {
        Ok(match self {
            Codec::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Codec::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
            Codec::None => Encoder::None(Vec::new()),
        })
    }

    /// A buffered reader of the NDJSON inside a file's bytes.
    pub fn decoder(self, file: bytes::Bytes) -> anyhow::Result<Box<dyn BufRead + Send>> {
        const BUF: usize = 256 << 10;
        let file = std::io::Cursor::new(file);
        Ok(match self {
            Codec::Gzip => Box::new(std::io::BufReader::with_capacity(
                BUF,
                flate2::read::MultiGzDecoder::new(file),
            )),
            Codec::Zstd => Box::new(std::io::BufReader::with_capacity(
                BUF,
                zstd::stream::read::Decoder::with_buffer(file)?,
            )),
            Codec::None => Box::new(file),
        })
    }
}

pub enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    None(Vec<u8>),
}

impl Encoder {
    pub fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.write_all(b),
            Encoder::Zstd(w) => w.write_all(b),
            Encoder::None(w) => w.write_all(b),
        }
    }

    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let text = b"{\"a\":1}\n{\"b\":[1,2,3]}\n".repeat(1000);
        for codec in [Codec::Gzip, Codec::Zstd, Codec::None] {
            let mut e = codec.encoder().unwrap();
            e.write_all(&text).unwrap();
            let file = e.finish().unwrap();
            if codec != Codec::None {
                assert!(
                    file.len() < text.len() / 10,
                    "{codec:?} compressed to {}",
                    file.len()
                );
            }
            let mut back = Vec::new();
            std::io::copy(&mut codec.decoder(file.into()).unwrap(), &mut back).unwrap();
            assert_eq!(back, text, "{codec:?}");
        }
    }
}
