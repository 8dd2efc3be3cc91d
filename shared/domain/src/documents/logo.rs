//! The tenant's logo: a PNG, a JPEG or an SVG, checked before it is stored (size, dimensions, and
//! for SVG nothing that runs or loads from elsewhere), kept under a key naming its SHA-256.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::kernel::error::{ErrorCode, ValidationError};
use crate::kernel::ids::TenantId;

/// A logo's largest file.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;
/// A logo's largest width and height, in pixels (SVG: user units).
pub const MAX_LOGO_SIDE: u32 = 2000;

pub const PNG: &str = "image/png";
pub const JPEG: &str = "image/jpeg";
pub const SVG: &str = "image/svg+xml";

/// The stored logo, as the branding names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Logo {
    /// The object's key in the documents bucket.
    pub key: String,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// `image/png`, `image/jpeg` or `image/svg+xml`.
    pub content_type: String,
    pub width: u32,
    pub height: u32,
}

impl Logo {
    /// Checks `bytes` sent as `content_type` and names the object they go under:
    /// `{tenant}/branding/logo/{sha256}.{png|jpg|svg}`.
    pub fn of_upload(
        tenant: TenantId,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Self, ValidationError> {
        if bytes.len() > MAX_LOGO_BYTES {
            return Err(ValidationError::new(
                ErrorCode::LogoTooLarge,
                "logo",
                format!(
                    "the logo is {} bytes; at most {MAX_LOGO_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let (content_type, ext, (width, height)) = match media.as_str() {
            PNG => (PNG, "png", png_size(bytes)?),
            JPEG => (JPEG, "jpg", jpeg_size(bytes)?),
            SVG => (SVG, "svg", svg_size(bytes)?),
            _ => {
                return Err(invalid(format!(
                    "`{media}` is not a logo type; send `{PNG}`, `{JPEG}` or `{SVG}`"
                )))
            }
        };
        for (side, value) in [("width", width), ("height", height)] {
            if !(1..=MAX_LOGO_SIDE).contains(&value) {
                return Err(invalid(format!(
                    "the logo's {side} is {value}; it must be 1 to {MAX_LOGO_SIDE}"
                )));
            }
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        Ok(Self {
            key: format!("{tenant}/branding/logo/{sha256}.{ext}"),
            sha256,
            content_type: content_type.to_owned(),
            width,
            height,
        })
    }
}

fn invalid(message: String) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidLogo, "logo", message)
}

/// Width and height from the IHDR chunk, which a PNG must start with.
fn png_size(bytes: &[u8]) -> Result<(u32, u32), ValidationError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let not_png = || invalid("the file is not a PNG (no signature and IHDR chunk)".into());
    let rest = bytes.strip_prefix(SIGNATURE).ok_or_else(not_png)?;
    if rest.len() < 16 || rest[..4] != [0, 0, 0, 13] || &rest[4..8] != b"IHDR" {
        return Err(not_png());
    }
    let be = |at: usize| u32::from_be_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]]);
    Ok((be(8), be(12)))
}

/// Width and height from a JPEG's frame header (the first SOF segment after SOI), walking
/// the segments before it by their lengths.
fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32), ValidationError> {
    let not_jpeg = || invalid("the file is not a JPEG (no SOI marker and frame header)".into());
    let mut rest = bytes.strip_prefix(&[0xFF, 0xD8]).ok_or_else(not_jpeg)?;
    loop {
        let [0xFF, marker, len_hi, len_lo, body @ ..] = rest else {
            return Err(not_jpeg());
        };
        // Padding: a marker may be preceded by any number of 0xFF.
        if *marker == 0xFF {
            rest = &rest[1..];
            continue;
        }
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
        // SOF0–SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
        let is_frame = (0xC0..=0xCF).contains(marker) && ![0xC4, 0xC8, 0xCC].contains(marker);
        if is_frame {
            let [_precision, h_hi, h_lo, w_hi, w_lo, ..] = body else {
                return Err(not_jpeg());
            };
            let side = |hi: u8, lo: u8| u32::from(u16::from_be_bytes([hi, lo]));
            return Ok((side(*w_hi, *w_lo), side(*h_hi, *h_lo)));
        }
        // Scan data or the end before any frame header: not an image we can size.
        if matches!(marker, 0xDA | 0xD9) || len < 2 {
            return Err(not_jpeg());
        }
        rest = rest.get(2 + len..).ok_or_else(not_jpeg)?;
    }
}

/// Width and height of an SVG (from `width`/`height`, else `viewBox`), refusing one that
/// could run script or load anything: it is served to customers' browsers.
fn svg_size(bytes: &[u8]) -> Result<(u32, u32), ValidationError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| invalid("an SVG logo must be UTF-8 text".into()))?;
    let lower = text.to_ascii_lowercase();
    let root = lower
        .find("<svg")
        .ok_or_else(|| invalid("the file has no `<svg` root element".into()))?;
    let before = &lower[..root];
    // Only the XML declaration, comments and a doctype may come first.
    if before.contains('<') && !before.trim_start().starts_with("<?xml") && !before.contains("<!") {
        return Err(invalid("the `<svg` element must be the root".into()));
    }
    if lower.contains("<!entity") {
        return Err(invalid("an SVG logo may not declare entities".into()));
    }
    if lower.contains("<script") || lower.contains("javascript:") {
        return Err(invalid("an SVG logo may not contain script".into()));
    }
    if lower.contains("<foreignobject") {
        return Err(invalid(
            "an SVG logo may not embed HTML (`foreignObject`)".into(),
        ));
    }
    let compact: String = lower.chars().filter(|c| !c.is_whitespace()).collect();
    for external in [
        "href=\"http",
        "href='http",
        "href=\"//",
        "href='//",
        "url(http",
        "url(//",
        "url(\"http",
        "url('http",
        "@import",
    ] {
        if compact.contains(external) {
            return Err(invalid(
                "an SVG logo may not reference other files (`href` or `url()` to http(s) or `//`)"
                    .into(),
            ));
        }
    }
    if has_event_handler(&lower) {
        return Err(invalid(
            "an SVG logo may not carry event handlers (`on…=`)".into(),
        ));
    }
    let tag_end = lower[root..]
        .find('>')
        .map(|end| root + end)
        .ok_or_else(|| invalid("the `<svg` element is not closed".into()))?;
    let tag = &text[root..tag_end];
    let view_box = attribute(tag, "viewBox").map(|v| {
        let numbers: Vec<f64> = v
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        (numbers.get(2).copied(), numbers.get(3).copied())
    });
    let side = |name: &str, from_box: Option<f64>| -> Result<u32, ValidationError> {
        let value = match attribute(tag, name) {
            Some(v) if !v.trim().ends_with('%') => length(v),
            _ => from_box,
        };
        value
            .map(|v| v.ceil())
            .filter(|v| v.is_finite() && *v >= 0.0 && *v <= f64::from(u32::MAX))
            // Bounded and whole just above, so the cast keeps the value.
            .map(|v| v as u32)
            .ok_or_else(|| {
                invalid(format!(
                    "the `<svg` element needs a `{name}` (or a `viewBox`) of at most {MAX_LOGO_SIDE}"
                ))
            })
    };
    let (box_w, box_h) = view_box.unwrap_or((None, None));
    Ok((side("width", box_w)?, side("height", box_h)?))
}

/// Whether an attribute named `on…` (an event handler) follows white space somewhere.
fn has_event_handler(lower: &str) -> bool {
    lower
        .match_indices("on")
        .filter(|(at, _)| lower[..*at].ends_with(|c: char| c.is_whitespace()))
        .any(|(at, _)| {
            let name = &lower[at + 2..];
            let letters = name.len()
                - name
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .len();
            letters > 0 && name[letters..].trim_start().starts_with('=')
        })
}

/// The value of `name="…"` (or `'…'`) in a start tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = tag[from..].find(name).map(|i| from + i) {
        from = at + name.len();
        let preceded = tag[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
        let rest = tag[from..].trim_start();
        if let (true, Some(rest)) = (preceded, rest.strip_prefix('=')) {
            let rest = rest.trim_start();
            let quote = rest.chars().next().filter(|q| *q == '"' || *q == '\'')?;
            let value = &rest[1..];
            return value.find(quote).map(|end| &value[..end]);
        }
    }
    None
}

/// A length in user units: a number, optionally `px`.
fn length(value: &str) -> Option<f64> {
    let value = value.trim();
    value
        .strip_suffix("px")
        .unwrap_or(value)
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    /// SOI, an APP0 segment, then a baseline frame header of `width` × `height`.
    pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        bytes.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        bytes.extend([0xFF, 0xFF, 0xC0, 0, 11, 8]);
        bytes.extend(height.to_be_bytes());
        bytes.extend(width.to_be_bytes());
        bytes.extend([1, 1, 0x11, 0]);
        bytes
    }

    fn check(content_type: &str, bytes: &[u8]) -> Result<Logo, ValidationError> {
        Logo::of_upload(TenantId::from_ulid(ulid::Ulid::nil()), content_type, bytes)
    }

    fn refused(content_type: &str, bytes: &[u8]) -> ErrorCode {
        check(content_type, bytes).unwrap_err().code
    }

    #[test]
    fn a_png_is_measured_and_named_by_its_hash() {
        let logo = check("image/png", &png(320, 80)).unwrap();
        assert_eq!((logo.width, logo.height), (320, 80));
        assert!(logo
            .key
            .ends_with(&format!("/branding/logo/{}.png", logo.sha256)));
        assert_eq!(refused(PNG, &png(2001, 10)), ErrorCode::InvalidLogo);
        assert_eq!(refused(PNG, &png(0, 10)), ErrorCode::InvalidLogo);
        assert_eq!(refused(PNG, b"GIF89a"), ErrorCode::InvalidLogo);
        assert_eq!(refused("image/gif", &png(1, 1)), ErrorCode::InvalidLogo);
        let mut big = png(10, 10);
        big.resize(MAX_LOGO_BYTES + 1, 0);
        assert_eq!(refused(PNG, &big), ErrorCode::LogoTooLarge);
    }

    #[test]
    fn a_jpeg_is_measured_from_its_frame_header() {
        let logo = check("image/jpeg", &jpeg(640, 200)).unwrap();
        assert_eq!((logo.width, logo.height), (640, 200));
        assert!(logo.key.ends_with(&format!("/{}.jpg", logo.sha256)));
        assert_eq!(refused(JPEG, &jpeg(2001, 10)), ErrorCode::InvalidLogo);
        assert_eq!(refused(JPEG, &jpeg(10, 0)), ErrorCode::InvalidLogo);
        assert_eq!(refused(JPEG, &png(10, 10)), ErrorCode::InvalidLogo);
        // Cut inside the APP0 segment, and a scan with no frame header before it.
        assert_eq!(refused(JPEG, &jpeg(10, 10)[..12]), ErrorCode::InvalidLogo);
        assert_eq!(
            refused(JPEG, &[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]),
            ErrorCode::InvalidLogo
        );
    }

    #[test]
    fn an_svg_is_measured_by_its_size_or_view_box() {
        let sized = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="200px" height="50"><rect width="1" height="1"/></svg>"#;
        let logo = check("image/svg+xml; charset=utf-8", sized).unwrap();
        assert_eq!(
            (logo.width, logo.height, logo.content_type.as_str()),
            (200, 50, SVG)
        );
        let boxed = br#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120.5 40"></svg>"#;
        assert_eq!(
            check(SVG, boxed).map(|l| (l.width, l.height)),
            Ok((121, 40))
        );
    }

    #[test]
    fn an_svg_that_runs_or_loads_anything_is_refused() {
        for bad in [
            r#"<svg viewBox="0 0 10 10"><script>alert(1)</script></svg>"#,
            r#"<svg viewBox="0 0 10 10"><image href="https://evil.test/x.png"/></svg>"#,
            r#"<svg viewBox="0 0 10 10"><use xlink:href = '//evil.test/a.svg#x'/></svg>"#,
            r#"<svg viewBox="0 0 10 10" onload="alert(1)"></svg>"#,
            r#"<svg viewBox="0 0 10 10"><a href="javascript:alert(1)">x</a></svg>"#,
            r#"<svg viewBox="0 0 3000 10"></svg>"#,
            r#"<svg></svg>"#,
            r#"<html><svg viewBox="0 0 10 10"></svg></html>"#,
            "<p>no svg</p>",
        ] {
            assert_eq!(
                refused(SVG, bad.as_bytes()),
                ErrorCode::InvalidLogo,
                "{bad}"
            );
        }
    }
}
