//! Assembling rendered tiles into one picture.
//!
//! The path-tracer sample renders a band of rows of a frame into `/output/tile.ppm`
//! (binary PPM, `P6`). The demo splits a frame into such bands across providers, then
//! stacks the bands in row order and writes a PNG.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, bail, ensure};

/// One decoded band of rows.
pub struct Tile {
    /// Pixels per row.
    pub width: u32,
    /// Rows in this tile.
    pub height: u32,
    /// `width × height × 3` bytes of RGB.
    pub rgb: Vec<u8>,
}

/// Decodes a binary PPM (`P6`, maxval 255), as written by the path-tracer job.
pub fn parse_ppm(bytes: &[u8]) -> anyhow::Result<Tile> {
    let mut fields = Vec::with_capacity(4);
    let mut pos = 0;
    while fields.len() < 4 {
        pos = skip_space_and_comments(bytes, pos);
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        ensure!(start < pos, "truncated PPM header");
        fields.push(std::str::from_utf8(&bytes[start..pos]).context("PPM header is not text")?);
    }
    ensure!(
        fields[0] == "P6",
        "not a binary PPM (magic {:?})",
        fields[0]
    );
    let width: u32 = fields[1].parse().context("PPM width")?;
    let height: u32 = fields[2].parse().context("PPM height")?;
    ensure!(
        fields[3] == "255",
        "PPM maxval must be 255, got {}",
        fields[3]
    );
    // Exactly one whitespace byte separates the header from the pixels.
    let pixels = bytes.get(pos + 1..).context("PPM has no pixel data")?;
    let expected = width as usize * height as usize * 3;
    if pixels.len() != expected {
        bail!(
            "PPM of {width}x{height} needs {expected} pixel bytes, has {}",
            pixels.len()
        );
    }
    Ok(Tile {
        width,
        height,
        rgb: pixels.to_vec(),
    })
}

fn skip_space_and_comments(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() {
        if bytes[pos].is_ascii_whitespace() {
            pos += 1;
        } else if bytes[pos] == b'#' {
            while pos < bytes.len() && bytes[pos] != b'\n' {
                pos += 1;
            }
        } else {
            break;
        }
    }
    pos
}

/// Stacks tiles (already in row order) into one frame and writes it as a PNG.
pub fn write_png(tiles: &[Tile], path: &Path) -> anyhow::Result<(u32, u32)> {
    let width = tiles
        .first()
        .map(|t| t.width)
        .context("no tiles to assemble")?;
    ensure!(
        tiles.iter().all(|t| t.width == width),
        "tiles have different widths"
    );
    let height: u32 = tiles.iter().map(|t| t.height).sum();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    let frame: Vec<u8> = tiles.iter().flat_map(|t| t.rgb.iter().copied()).collect();
    writer.write_image_data(&frame)?;
    writer.finish()?;
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ppm_with_comment() {
        let mut bytes = b"P6\n# made by a test\n2 1\n255\n".to_vec();
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let tile = parse_ppm(&bytes).unwrap();
        assert_eq!((tile.width, tile.height), (2, 1));
        assert_eq!(tile.rgb, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_short_or_foreign_images() {
        assert!(parse_ppm(b"P6\n2 1\n255\n\x01\x02").is_err());
        assert!(parse_ppm(b"P3\n1 1\n255\n1 2 3").is_err());
        assert!(parse_ppm(b"").is_err());
    }

    #[test]
    fn stacks_tiles_into_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let tiles = [
            Tile {
                width: 2,
                height: 1,
                rgb: vec![255; 6],
            },
            Tile {
                width: 2,
                height: 2,
                rgb: vec![0; 12],
            },
        ];
        let path = dir.path().join("frame.png");
        assert_eq!(write_png(&tiles, &path).unwrap(), (2, 3));
        let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (2, 3));
    }
}
