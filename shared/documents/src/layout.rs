//! A small page model: the document is laid out into a list of drawing operations per page
//! (so page breaks and "page i of n" are known before anything is painted), then painted
//! with krilla. Coordinates are PDF points from the top-left corner.

use std::sync::LazyLock;

use billing_domain::documents::branding::Color;
use billing_domain::documents::logo::{JPEG, PNG};
use billing_domain::documents::stored::RenderedPdf;
use krilla::color::rgb;
use krilla::error::KrillaError;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::Fill;
use krilla::text::{Font, TextDirection};
use krilla::Document;

use crate::RenderError;

/// A4.
pub const PAGE_WIDTH: f32 = 595.28;
pub const PAGE_HEIGHT: f32 = 841.89;
pub const MARGIN: f32 = 48.0;
pub const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
/// Where content stops, above the footer.
const CONTENT_BOTTOM: f32 = PAGE_HEIGHT - 64.0;
/// The box a logo is fitted into at the top of the first page (width, height).
pub const LOGO_BOX: (f32, f32) = (180.0, 48.0);

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// The embedded faces, parsed once per process: krilla's for drawing (it subsets them on
/// write) and rustybuzz's for measuring with the same shaping krilla applies.
struct Faces {
    regular: Font,
    bold: Font,
    measure_regular: rustybuzz::Face<'static>,
    measure_bold: rustybuzz::Face<'static>,
}

static FACES: LazyLock<Faces> = LazyLock::new(|| Faces {
    regular: Font::new(REGULAR.into(), 0).expect("the bundled DejaVuSans.ttf parses"),
    bold: Font::new(BOLD.into(), 0).expect("the bundled DejaVuSans-Bold.ttf parses"),
    measure_regular: rustybuzz::Face::from_slice(REGULAR, 0)
        .expect("the bundled DejaVuSans.ttf parses"),
    measure_bold: rustybuzz::Face::from_slice(BOLD, 0)
        .expect("the bundled DejaVuSans-Bold.ttf parses"),
});

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub size: f32,
    pub bold: bool,
    pub color: Color,
}

pub const TEXT: Color = Color::rgb(0x11, 0x18, 0x27);
pub const MUTED: Color = Color::rgb(0x6b, 0x72, 0x80);
pub const RULE: Color = Color::rgb(0xd1, 0xd5, 0xdb);

impl Style {
    pub const fn body() -> Self {
        Self {
            size: 9.0,
            bold: false,
            color: TEXT,
        }
    }
    pub const fn small() -> Self {
        Self {
            size: 7.5,
            bold: false,
            color: MUTED,
        }
    }
    pub const fn bold(self) -> Self {
        Self { bold: true, ..self }
    }
    pub const fn sized(self, size: f32) -> Self {
        Self { size, ..self }
    }
    pub const fn colored(self, color: Color) -> Self {
        Self { color, ..self }
    }
    /// Baseline-to-baseline distance.
    pub fn leading(self) -> f32 {
        self.size * 1.35
    }
}

/// The advance width of `text` in points.
pub fn width(text: &str, style: Style) -> f32 {
    let face = if style.bold {
        &FACES.measure_bold
    } else {
        &FACES.measure_regular
    };
    let mut buffer = rustybuzz::UnicodeBuffer::new();
    buffer.push_str(text);
    buffer.guess_segment_properties();
    let shaped = rustybuzz::shape(face, &[], buffer);
    let units: i64 = shaped
        .glyph_positions()
        .iter()
        .map(|p| i64::from(p.x_advance))
        .sum();
    // Font units to points; the precision lost here is far below a printed pixel.
    units as f32 * style.size / face.units_per_em() as f32
}

/// Greedy word wrap to `max` points; a word longer than a line is cut by characters.
pub fn wrap(text: &str, style: Style, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if width(&candidate, style) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            let mut piece = String::new();
            for ch in word.chars() {
                piece.push(ch);
                if width(&piece, style) > max && piece.chars().count() > 1 {
                    piece.pop();
                    lines.push(std::mem::take(&mut piece));
                    piece.push(ch);
                }
            }
            line = piece;
        }
        lines.push(line);
    }
    lines
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Text {
        x: f32,
        baseline: f32,
        style: Style,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Color,
    },
    Image {
        x: f32,
        y: f32,
        size: Size,
        image: Image,
    },
}

/// Lays content out top to bottom, breaking pages when a block does not fit.
pub struct Layout {
    pages: Vec<Vec<Op>>,
    /// The top of the next block on the current page.
    pub y: f32,
    /// Why the logo given to [`Layout::logo`] is not drawn.
    logo_skipped: Option<String>,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    pub fn new() -> Self {
        Self {
            pages: vec![Vec::new()],
            y: MARGIN,
            logo_skipped: None,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("a layout always has a page")
    }

    pub fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN;
    }

    /// Starts a new page unless `height` more points fit on this one.
    pub fn need(&mut self, height: f32) {
        if self.y + height > CONTENT_BOTTOM {
            self.new_page();
        }
    }

    /// Text whose top is at `top`, aligned at `x` (its left or its right edge).
    pub fn text_at(&mut self, x: f32, top: f32, align: Align, style: Style, text: &str) {
        if text.is_empty() {
            return;
        }
        let x = match align {
            Align::Left => x,
            Align::Right => x - width(text, style),
        };
        let baseline = top + style.size;
        self.ops().push(Op::Text {
            x,
            baseline,
            style,
            text: text.to_owned(),
        });
    }

    /// A wrapped paragraph at the cursor; returns its height.
    pub fn paragraph(&mut self, x: f32, max: f32, style: Style, text: &str) -> f32 {
        let lines = wrap(text, style, max);
        let mut height = 0.0;
        for line in lines {
            self.need(style.leading());
            let top = self.y;
            self.text_at(x, top, Align::Left, style, &line);
            self.y += style.leading();
            height += style.leading();
        }
        height
    }

    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: Color) {
        self.ops().push(Op::Rect { x, y, w, h, color });
    }

    /// The logo (`bytes` of `content_type`) at the cursor, fitted into [`LOGO_BOX`] with its
    /// aspect kept; the cursor moves below it. PNG and JPEG are drawn; an SVG is not (krilla's
    /// SVG support does not fit the renderer's size budget) and leaves the cursor where it
    /// is, as does a file that does not decode, which [`Layout::finish`] reports.
    pub fn logo(&mut self, bytes: &[u8], content_type: &str) {
        let decoded = match content_type {
            PNG => Image::from_png(bytes.to_vec().into(), true),
            JPEG => Image::from_jpeg(bytes.to_vec().into(), true),
            _ => return,
        };
        let image = match decoded {
            Ok(image) => image,
            Err(why) => {
                self.logo_skipped = Some(format!("the {content_type} logo does not decode: {why}"));
                return;
            }
        };
        let (w, h) = fit(image.size(), LOGO_BOX);
        let Some(size) = Size::from_wh(w, h) else {
            return;
        };
        let y = self.y;
        self.ops().push(Op::Image {
            x: MARGIN,
            y,
            size,
            image,
        });
        self.y += h + 12.0;
    }

    /// A horizontal rule across the content at the cursor.
    pub fn rule(&mut self, color: Color) {
        let y = self.y;
        self.rect(MARGIN, y, CONTENT_WIDTH, 0.6, color);
    }

    /// Paints every page with the footer (`footer` lines and "Page i of n") and returns the
    /// PDF. krilla decodes an image's pixels only when it writes the document, so a logo whose
    /// header reads but whose data does not fails here: the pages are painted again without
    /// it, since a broken logo must not cost the customer their invoice.
    pub fn finish(
        mut self,
        metadata: Metadata,
        footer: &[String],
    ) -> Result<RenderedPdf, RenderError> {
        let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
            .ok_or(RenderError::Layout("page size"))?;
        match self.paint(&settings, metadata.clone(), footer) {
            Ok(bytes) => Ok(RenderedPdf {
                bytes,
                logo_skipped: self.logo_skipped,
            }),
            Err(KrillaError::Image(_, _, why)) => {
                for ops in &mut self.pages {
                    ops.retain(|op| !matches!(op, Op::Image { .. }));
                }
                let bytes = self.paint(&settings, metadata, footer).map_err(pdf_error)?;
                Ok(RenderedPdf {
                    bytes,
                    logo_skipped: Some(format!("the logo's image data does not decode: {why}")),
                })
            }
            Err(e) => Err(pdf_error(e)),
        }
    }

    fn paint(
        &self,
        settings: &PageSettings,
        metadata: Metadata,
        footer: &[String],
    ) -> Result<Vec<u8>, KrillaError> {
        let mut document = Document::new();
        document.set_metadata(metadata);
        let count = self.pages.len();
        for (i, ops) in self.pages.iter().enumerate() {
            let mut page = document.start_page_with(settings.clone());
            let mut surface = page.surface();
            let mut paint = |op: &Op| match op {
                Op::Text {
                    x,
                    baseline,
                    style,
                    text,
                } => {
                    surface.set_fill(Some(fill(style.color)));
                    let font = if style.bold {
                        FACES.bold.clone()
                    } else {
                        FACES.regular.clone()
                    };
                    surface.draw_text(
                        Point::from_xy(*x, *baseline),
                        font,
                        style.size,
                        text,
                        false,
                        TextDirection::Auto,
                    );
                }
                Op::Rect { x, y, w, h, color } => {
                    let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else {
                        return;
                    };
                    let mut path = PathBuilder::new();
                    path.push_rect(rect);
                    if let Some(path) = path.finish() {
                        surface.set_fill(Some(fill(*color)));
                        surface.draw_path(&path);
                    }
                }
                Op::Image { x, y, size, image } => {
                    surface.push_transform(&Transform::from_translate(*x, *y));
                    surface.draw_image(image.clone(), *size);
                    surface.pop();
                }
            };
            for op in ops {
                paint(op);
            }
            let mut footer_ops = Layout::new();
            let mut top = CONTENT_BOTTOM + 16.0;
            for line in footer {
                footer_ops.text_at(MARGIN, top, Align::Left, Style::small(), line);
                top += Style::small().leading();
            }
            footer_ops.text_at(
                PAGE_WIDTH - MARGIN,
                CONTENT_BOTTOM + 16.0,
                Align::Right,
                Style::small(),
                &format!("Page {} of {count}", i + 1),
            );
            for op in footer_ops.pages.concat().iter() {
                paint(op);
            }
            surface.finish();
            page.finish();
        }
        document.finish()
    }
}

fn pdf_error(e: KrillaError) -> RenderError {
    RenderError::Pdf(format!("{e:?}"))
}

/// `pixels` scaled to fit `bounds` (points), aspect kept.
fn fit(pixels: (u32, u32), bounds: (f32, f32)) -> (f32, f32) {
    let (w, h) = (pixels.0 as f32, pixels.1 as f32);
    let scale = (bounds.0 / w).min(bounds.1 / h);
    (w * scale, h * scale)
}

fn fill(color: Color) -> Fill {
    Fill {
        paint: rgb::Color::new(color.red, color.green, color.blue).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let style = Style::body();
        let text = "Usage of the API gateway in the eu-central-1 region, all endpoints, \
                    including a veryveryveryveryveryveryveryverylongidentifier";
        let lines = wrap(text, style, 120.0);
        assert!(lines.len() > 2);
        assert!(lines.iter().all(|l| width(l, style) <= 120.0), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn a_logo_fits_its_box_with_its_aspect_kept() {
        // Wide: the width binds. Tall: the height does. Small: scaled up to the box.
        let close = |got: (f32, f32), want: (f32, f32)| {
            assert!(
                (got.0 - want.0).abs() < 0.001 && (got.1 - want.1).abs() < 0.001,
                "{got:?} is not {want:?}"
            );
        };
        close(fit((320, 80), LOGO_BOX), (180.0, 45.0));
        close(fit((100, 200), LOGO_BOX), (24.0, 48.0));
        close(fit((30, 8), LOGO_BOX), (180.0, 48.0));
        close(fit((16, 16), LOGO_BOX), (48.0, 48.0));
    }

    #[test]
    fn wider_text_measures_wider() {
        let s = Style::body();
        assert!(width("WWW", s) > width("iii", s));
        assert!(width("abc", s.bold()) > width("abc", s));
        assert!((width("abc", s.sized(18.0)) - 2.0 * width("abc", s)).abs() < 0.01);
    }
}
