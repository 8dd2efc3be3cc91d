//! Renders the sample invoice and credit note and reads them back with poppler's
//! `pdftotext` and `pdfimages` (Debian `poppler-utils`; `make poppler` installs it).

mod sample;

use std::path::PathBuf;
use std::process::Command;

use billing_documents::{render_credit_note, render_invoice};
use billing_domain::documents::branding::Branding;
use billing_domain::documents::logo::Logo;
use billing_domain::kernel::ids::TenantId;
use billing_domain::kernel::money::Money;

/// What a poppler tool (`pdftotext`, `pdfimages`) prints for the PDF, given `args` and then
/// the file and `after`.
fn poppler(tool: &str, args: &[&str], after: &[&str], pdf: &[u8], name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}.pdf"));
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new(tool)
        .args(args)
        .arg(&path)
        .args(after)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{tool} is needed to read the PDF back ({e}): install Debian's poppler-utils \
                 (`make poppler`)"
            )
        });
    assert!(out.status.success(), "{tool} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The text of a PDF as `pdftotext -layout` reads it.
fn pdftotext(pdf: &[u8], name: &str) -> String {
    poppler(
        "pdftotext",
        &["-layout", "-enc", "UTF-8"],
        &["-"],
        pdf,
        name,
    )
}

#[test]
fn the_invoice_shows_its_number_customer_lines_and_amount_due() {
    let invoice = sample::invoice();
    let branding = sample::branding();
    let pdf = render_invoice(&invoice, &branding, None).unwrap().bytes;
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdftotext(&pdf, "invoice");
    let money = |minor: i64| {
        branding
            .locale
            .format_money(Money::new(minor, invoice.currency))
    };

    for expected in [
        "NIM-000042",
        "Müller & Søn Logistik AG",
        "Nimbus Cloud GmbH",
        "DE136695976",
        "CHE-123.456.788 MWST",
        "Zürich",
        "1 Mar 2026",
        "15 Mar 2026",
        "1 Feb 2026 – 1 Mar 2026",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert_eq!(invoice.lines.len(), 4);
    for line in &invoice.lines {
        for amount in [line.amount, line.total, line.tax_amount] {
            let written = money(amount);
            assert!(
                text.contains(&written),
                "line amount {written} missing:\n{text}"
            );
        }
        if line.discount_amount != 0 {
            assert!(text.contains(&money(-line.discount_amount)));
        }
    }
    let due = money(invoice.amount_due.get());
    let due_line = text
        .lines()
        .find(|l| l.contains("Amount due"))
        .unwrap_or_else(|| panic!("no amount due in:\n{text}"));
    assert!(due_line.contains(&due), "{due_line:?} should show {due}");
    assert!(
        text.contains(&money(-invoice.credit_total.get())),
        "credits applied"
    );
    assert!(text.contains("USt (DE) 19 %"), "tax summary:\n{text}");
    assert!(
        text.contains("Open, due 15 Mar 2026"),
        "payment status:\n{text}"
    );
}

#[test]
fn the_appendix_explains_usage_and_proration_lines() {
    let pdf = render_invoice(&sample::invoice(), &sample::branding(), None)
        .unwrap()
        .bytes;
    let text = pdftotext(&pdf, "appendix");
    for expected in [
        "How the amounts were computed",
        "[1] API requests (Frankfurt region, metered)",
        "Tier 2 (10000 to 100000): 90000 × 0.0008 EUR = 72 EUR",
        "Tier 3 (100000 to ∞): 23456 × 0.0005 EUR + flat 15 EUR = 26.728 EUR",
        "[2] Upgrade to Business (prorated)",
        "€99.00 × 19/28 = 67.178571… EUR, rounded once half away from zero to €67.18",
        "Fraction 19/28 (calendar days, first and last included)",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // The flat fee and the fixed line explain themselves.
    assert!(!text.contains("[3]"));
}

#[test]
fn rendering_twice_gives_identical_bytes() {
    let invoice = sample::invoice();
    let branding = sample::branding();
    let first = render_invoice(&invoice, &branding, None).unwrap().bytes;
    let second = render_invoice(&invoice, &branding, None).unwrap().bytes;
    assert_eq!(first, second);
    let note = sample::credit_note(&invoice);
    assert_eq!(
        render_credit_note(&note, &invoice, &branding, None)
            .unwrap()
            .bytes,
        render_credit_note(&note, &invoice, &branding, None)
            .unwrap()
            .bytes
    );
    // A changed branding is a different document.
    let mut other = branding.clone();
    other.footer = Some("Another footer".into());
    assert_ne!(first, render_invoice(&invoice, &other, None).unwrap().bytes);
}

#[test]
fn the_credit_note_shows_what_it_credits() {
    let invoice = sample::invoice();
    let branding = sample::branding();
    let note = sample::credit_note(&invoice);
    let text = pdftotext(
        &render_credit_note(&note, &invoice, &branding, None)
            .unwrap()
            .bytes,
        "credit-note",
    );
    let money = |minor: i64| {
        branding
            .locale
            .format_money(Money::new(minor, invoice.currency))
    };
    for expected in [
        "CREDIT NOTE".to_owned(),
        note.id.to_string(),
        "NIM-000042".to_owned(),
        "Müller & Søn Logistik AG".to_owned(),
        money(note.amount.get()),
        money(note.tax_amount.get()),
        "credited to the account's balance".to_owned(),
    ] {
        assert!(
            text.contains(&expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn a_draft_is_refused() {
    let mut draft = sample::invoice();
    draft.number = None;
    let err = render_invoice(&draft, &sample::branding(), None).unwrap_err();
    assert!(err.to_string().contains("not finalized"));
}

/// The images `pdfimages -list` finds: (page, width, height, encoding, x-ppi) of each.
fn images(pdf: &[u8], name: &str) -> Vec<(u32, u32, u32, String, u32)> {
    poppler("pdfimages", &["-list"], &[], pdf, name)
        .lines()
        .skip(2) // the header and its rule
        .map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let n = |i: usize| cols[i].parse::<u32>().unwrap();
            // page num type width height color comp bpc enc interp object ID x-ppi y-ppi ...
            (n(0), n(3), n(4), cols[8].to_owned(), n(12))
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// The sample branding with `bytes` uploaded as its logo (the upload's own checks).
fn with_logo(content_type: &str, bytes: &[u8]) -> Branding {
    let logo = Logo::of_upload(TenantId::from_ulid(ulid::Ulid::nil()), content_type, bytes)
        .expect("the fixture passes the upload's checks");
    let branding = sample::branding();
    let at = branding.updated_at.unwrap();
    branding.with_logo(Some(logo), at)
}

#[test]
fn png_and_jpeg_logos_are_drawn_at_the_top_of_the_first_page() {
    let invoice = sample::invoice();
    // The box is 180 × 48 pt: the 320 × 80 PNG is held by its width (180 × 45 pt, so
    // 320 px over 2.5 in = 128 ppi), the 240 × 120 JPEG by its height (96 × 48 pt, 180 ppi).
    for (file, content_type, width, height, encoding, ppi) in [
        ("logo.png", "image/png", 320, 80, "image", 128),
        ("logo.jpg", "image/jpeg", 240, 120, "jpeg", 180),
    ] {
        let bytes = fixture(file);
        let branding = with_logo(content_type, &bytes);
        let pdf = render_invoice(&invoice, &branding, Some(&bytes)).unwrap();
        assert_eq!(pdf.logo_skipped, None, "{file}");
        // Once, on page 1 of 2 (the appendix has no logo), at its own pixel size.
        assert_eq!(
            images(&pdf.bytes, file),
            vec![(1, width, height, encoding.to_owned(), ppi)],
            "{file}"
        );
        assert!(pdftotext(&pdf.bytes, file).contains("NIM-000042"));
        let again = render_invoice(&invoice, &branding, Some(&bytes)).unwrap();
        assert_eq!(
            again.bytes, pdf.bytes,
            "{file}: rendering twice gives the same bytes"
        );

        let note = sample::credit_note(&invoice);
        let credit = render_credit_note(&note, &invoice, &branding, Some(&bytes)).unwrap();
        let name = format!("{file}-credit-note");
        assert_eq!(images(&credit.bytes, &name).len(), 1, "{name}");
    }
}

#[test]
fn a_logo_that_does_not_decode_is_left_out_of_a_complete_invoice() {
    let invoice = sample::invoice();
    let png = fixture("logo.png");
    // Its chunks cut inside the image data: the header reads (krilla sizes the image), the
    // pixels do not (krilla fails only when it writes the document).
    let cut = &png[..png.len() - 40];
    // Not a PNG past its IHDR chunk: the header does not read.
    let header_only = &png[..33];
    for (bytes, why) in [
        (cut, "image data does not decode"),
        (header_only, "does not decode"),
    ] {
        let branding = with_logo("image/png", bytes);
        let pdf = render_invoice(&invoice, &branding, Some(bytes)).unwrap();
        let skipped = pdf.logo_skipped.expect("the reason is given");
        assert!(skipped.contains(why), "{skipped}");
        assert_eq!(images(&pdf.bytes, "broken-logo"), vec![]);
        let text = pdftotext(&pdf.bytes, "broken-logo");
        assert!(
            text.contains("NIM-000042") && text.contains("Amount due"),
            "{text}"
        );
    }
    // An SVG logo is not drawn on PDFs, and that is no failure.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="50"></svg>"#;
    let pdf = render_invoice(&invoice, &with_logo("image/svg+xml", svg), Some(svg)).unwrap();
    assert_eq!(pdf.logo_skipped, None);
    assert_eq!(
        pdf.bytes,
        render_invoice(&invoice, &sample::branding(), None)
            .unwrap()
            .bytes
    );
}
