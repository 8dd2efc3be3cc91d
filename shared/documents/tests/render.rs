//! Renders the sample invoice and credit note and reads them back with poppler's
//! `pdftotext` (Debian `poppler-utils`; `make poppler` installs it).

mod sample;

use std::path::PathBuf;
use std::process::Command;

use billing_documents::{render_credit_note, render_invoice};
use billing_domain::kernel::money::Money;

/// The text of a PDF as `pdftotext -layout` reads it.
fn pdftotext(pdf: &[u8], name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}.pdf"));
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "pdftotext is needed to read the PDF back ({e}): install Debian's poppler-utils \
                 (`make poppler`)"
            )
        });
    assert!(out.status.success(), "pdftotext failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_invoice_shows_its_number_customer_lines_and_amount_due() {
    let invoice = sample::invoice();
    let branding = sample::branding();
    let pdf = render_invoice(&invoice, &branding).unwrap();
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
    let pdf = render_invoice(&sample::invoice(), &sample::branding()).unwrap();
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
    let first = render_invoice(&invoice, &branding).unwrap();
    let second = render_invoice(&invoice, &branding).unwrap();
    assert_eq!(first, second);
    let note = sample::credit_note(&invoice);
    assert_eq!(
        render_credit_note(&note, &invoice, &branding).unwrap(),
        render_credit_note(&note, &invoice, &branding).unwrap()
    );
    // A changed branding is a different document.
    let mut other = branding.clone();
    other.footer = Some("Another footer".into());
    assert_ne!(first, render_invoice(&invoice, &other).unwrap());
}

#[test]
fn the_credit_note_shows_what_it_credits() {
    let invoice = sample::invoice();
    let branding = sample::branding();
    let note = sample::credit_note(&invoice);
    let text = pdftotext(
        &render_credit_note(&note, &invoice, &branding).unwrap(),
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
    let err = render_invoice(&draft, &sample::branding()).unwrap_err();
    assert!(err.to_string().contains("not finalized"));
}
