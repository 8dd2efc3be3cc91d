//! What an invoice and a credit note show, and where: the two templates over [`Layout`].

use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::billing::invoice_draft::InvoiceLine;
use billing_domain::billing::periods::Period;
use billing_domain::collection::credit_note::{CreditNote, CreditNoteReason};
use billing_domain::collection::payment::PaymentStatus;
use billing_domain::customers::account::Address;
use billing_domain::documents::branding::{Branding, Color};
use billing_domain::documents::locale::Locale;
use billing_domain::documents::stored::RenderedPdf;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::money::{MinorUnits, Money};
use jiff::Timestamp;
use krilla::metadata::{DateTime, Metadata};
use rust_decimal::Decimal;

use crate::explain::{explain, Explanation};
use crate::layout::{Align, Layout, Style, CONTENT_WIDTH, MARGIN, MUTED, RULE};
use crate::{date, seller_tax_ids, RenderError};

const RIGHT: f32 = MARGIN + CONTENT_WIDTH;
const HALF: f32 = MARGIN + CONTENT_WIDTH / 2.0;
const WHITE: Color = Color::rgb(0xff, 0xff, 0xff);

/// Formats amounts and dates of one document.
struct Fmt {
    currency: Currency,
    locale: Locale,
}

impl Fmt {
    fn money(&self, minor: i64) -> String {
        self.locale.format_money(Money::new(minor, self.currency))
    }
    fn units(&self, amount: MinorUnits) -> String {
        self.money(amount.get())
    }
    /// A unit price: money when it fits the minor unit, else the exact decimal and code.
    fn price(&self, major: Decimal) -> String {
        match Money::from_decimal_exact(major, self.currency) {
            Ok(m) => self.locale.format_money(m),
            Err(_) => format!("{} {}", major.normalize(), self.currency.code()),
        }
    }
    fn date(&self, t: Timestamp) -> String {
        date(t, self.locale)
    }
    fn period(&self, p: &Period) -> String {
        format!("{} – {}", self.date(p.start), self.date(p.end))
    }
}

fn address_lines(address: Option<&Address>) -> Vec<String> {
    let Some(a) = address else {
        return Vec::new();
    };
    let city = [a.postal_code.as_deref(), a.city.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    [
        a.line1.clone(),
        a.line2.clone(),
        (!city.is_empty()).then_some(city),
        a.state.clone(),
        a.country.clone(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A titled block of lines at `x`, from `top`; returns its bottom.
fn block(layout: &mut Layout, x: f32, top: f32, title: &str, lines: &[String]) -> f32 {
    let mut y = top;
    layout.text_at(x, y, Align::Left, Style::small().bold(), title);
    y += Style::small().leading() + 2.0;
    for (i, line) in lines.iter().enumerate() {
        let style = if i == 0 {
            Style::body().bold()
        } else {
            Style::body()
        };
        layout.text_at(x, y, Align::Left, style, line);
        y += style.leading();
    }
    y
}

/// Label–value pairs, values right-aligned at the content's right edge; returns the bottom.
fn pairs(layout: &mut Layout, label_x: f32, top: f32, rows: &[(String, String)]) -> f32 {
    let mut y = top;
    for (label, value) in rows {
        layout.text_at(label_x, y, Align::Left, Style::body().colored(MUTED), label);
        layout.text_at(RIGHT, y, Align::Right, Style::body(), value);
        y += Style::body().leading();
    }
    y
}

fn seller_lines(branding: &Branding, tax_ids: &[String]) -> Vec<String> {
    let mut lines = vec![branding.legal_name.clone().unwrap_or_default()];
    lines.extend(address_lines(branding.address.as_ref()));
    lines.extend(tax_ids.iter().map(|id| format!("Tax id: {id}")));
    if let Some(email) = &branding.support_email {
        lines.push(email.clone());
    }
    lines
}

fn buyer_lines(invoice: &Invoice) -> Vec<String> {
    let details = invoice.billing_details.as_ref();
    let mut lines = vec![details
        .and_then(|d| d.name.clone())
        .unwrap_or_else(|| invoice.account_id.to_string())];
    lines.extend(address_lines(details.and_then(|d| d.address.as_ref())));
    lines.extend(
        invoice
            .buyer_tax_ids
            .iter()
            .map(|id| format!("Tax id: {id}")),
    );
    lines
}

/// The title band: the logo above it when the branding has one (`logo` is its file), then
/// seller name left, document kind and number right; returns the bottom.
fn header(
    layout: &mut Layout,
    branding: &Branding,
    logo: Option<&[u8]>,
    kind: &str,
    number: &str,
) -> f32 {
    if let (Some(meta), Some(bytes)) = (&branding.logo, logo) {
        layout.logo(bytes, &meta.content_type);
    }
    let top = layout.y;
    let name = branding.legal_name.as_deref().unwrap_or("");
    layout.text_at(
        MARGIN,
        top,
        Align::Left,
        Style::body()
            .bold()
            .sized(16.0)
            .colored(branding.primary_color),
        name,
    );
    layout.text_at(
        RIGHT,
        top,
        Align::Right,
        Style::body()
            .bold()
            .sized(20.0)
            .colored(branding.accent_color),
        kind,
    );
    layout.text_at(
        RIGHT,
        top + 26.0,
        Align::Right,
        Style::body().bold(),
        number,
    );
    layout.rect(
        MARGIN,
        top + 42.0,
        CONTENT_WIDTH,
        2.0,
        branding.primary_color,
    );
    top + 56.0
}

fn metadata(title: String, id: String, at: Timestamp, author: Option<&str>) -> Metadata {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    let small = |v: i8| u8::try_from(v).unwrap_or(0);
    let created = DateTime::new(u16::try_from(utc.year()).unwrap_or(1970))
        .month(small(utc.month()))
        .day(small(utc.day()))
        .hour(small(utc.hour()))
        .minute(small(utc.minute()))
        .second(small(utc.second()))
        .utc_offset_hour(0)
        .utc_offset_minute(0);
    let metadata = Metadata::new()
        .title(title)
        .document_id(id)
        .creation_date(created)
        .producer("billing-documents".into());
    match author {
        Some(a) => metadata.authors(vec![a.to_owned()]),
        None => metadata,
    }
}

fn footer(branding: &Branding) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(f) = &branding.footer {
        lines.push(f.clone());
    }
    if let Some(email) = &branding.support_email {
        lines.push(format!("Questions about this document: {email}"));
    }
    lines
}

// Right edges of the numeric columns of the lines table.
const COL_QTY: f32 = MARGIN + 238.0;
const COL_UNIT: f32 = MARGIN + 300.0;
const COL_AMOUNT: f32 = MARGIN + 356.0;
const COL_DISCOUNT: f32 = MARGIN + 408.0;
const COL_TAX: f32 = MARGIN + 452.0;
const DESCRIPTION_WIDTH: f32 = 180.0;

fn table_header(layout: &mut Layout, branding: &Branding, columns: &[(&str, f32, Align)]) {
    let top = layout.y;
    layout.rect(MARGIN, top, CONTENT_WIDTH, 16.0, branding.accent_color);
    let style = Style::small().bold().colored(WHITE);
    for (title, x, align) in columns {
        let x = match align {
            Align::Left => *x + 4.0,
            Align::Right => *x - 4.0,
        };
        layout.text_at(x, top + 4.5, *align, style, title);
    }
    layout.y = top + 20.0;
}

fn line_row(layout: &mut Layout, f: &Fmt, line: &InvoiceLine, note: Option<usize>) {
    let description = match note {
        Some(n) => format!("{} [{n}]", line.description),
        None => line.description.clone(),
    };
    let desc = crate::layout::wrap(&description, Style::body(), DESCRIPTION_WIDTH);
    let mut details: Vec<String> = line.period.iter().map(|p| f.period(p)).collect();
    details.extend(line.taxes.iter().map(|t| {
        format!(
            "{} {} %{}: {}",
            t.display_name.as_deref().unwrap_or(&t.tax_rate_id),
            t.percentage.normalize(),
            if t.inclusive { " incl." } else { "" },
            f.money(t.amount)
        )
    }));
    let height = desc.len() as f32 * Style::body().leading()
        + details.len() as f32 * Style::small().leading()
        + 6.0;
    layout.need(height);
    let top = layout.y;
    let mut y = top;
    for text in &desc {
        layout.text_at(MARGIN + 4.0, y, Align::Left, Style::body(), text);
        y += Style::body().leading();
    }
    for text in &details {
        layout.text_at(MARGIN + 4.0, y, Align::Left, Style::small(), text);
        y += Style::small().leading();
    }
    let cell = |layout: &mut Layout, x: f32, text: &str| {
        layout.text_at(x - 4.0, top, Align::Right, Style::body(), text);
    };
    if let Some(q) = line.quantity {
        cell(layout, COL_QTY, &q.normalize().to_string());
    }
    if let Some(p) = line.unit_price {
        cell(layout, COL_UNIT, &f.price(p));
    }
    cell(layout, COL_AMOUNT, &f.money(line.amount));
    if line.discount_amount != 0 {
        cell(layout, COL_DISCOUNT, &f.money(-line.discount_amount));
    }
    if line.tax_amount != 0 {
        cell(layout, COL_TAX, &f.money(line.tax_amount));
    }
    cell(layout, RIGHT, &f.money(line.total));
    layout.y = top + height;
    layout.rule(RULE);
    layout.y += 4.0;
}

fn status_text(invoice: &Invoice, f: &Fmt) -> String {
    let mut text = match invoice.status {
        InvoiceStatus::Paid => match invoice.paid_at {
            Some(at) => format!("Paid on {}", f.date(at)),
            None => "Paid".to_owned(),
        },
        InvoiceStatus::Open => match invoice.due_date {
            Some(due) => format!("Open, due {}", f.date(due)),
            None => "Open".to_owned(),
        },
        InvoiceStatus::Void => "Void".to_owned(),
        InvoiceStatus::Uncollectible => "Uncollectible".to_owned(),
        InvoiceStatus::Draft => "Draft".to_owned(),
    };
    if invoice.status == InvoiceStatus::Open {
        let attempt = match invoice.payment_status {
            Some(PaymentStatus::RequiresAction) => Some("the last payment needs authentication"),
            Some(PaymentStatus::Failed) => Some("the last payment attempt failed"),
            Some(PaymentStatus::Pending) => Some("a payment is scheduled"),
            _ => None,
        };
        if let Some(a) = attempt {
            text = format!("{text}; {a}");
        }
    }
    if let Some(reference) = &invoice.paid_out_of_band {
        text = format!("{text} (paid outside the platform: {reference})");
    }
    text
}

/// The invoice's PDF. `invoice` must be finalized (it has a number and a finalization date);
/// `logo` is the file the branding's `logo` names, drawn when it decodes.
pub fn render_invoice(
    invoice: &Invoice,
    branding: &Branding,
    logo: Option<&[u8]>,
) -> Result<RenderedPdf, RenderError> {
    let number = invoice
        .number
        .as_deref()
        .ok_or_else(|| RenderError::NotFinalized(invoice.id.to_string()))?;
    let issued = invoice
        .finalized_at
        .ok_or_else(|| RenderError::NotFinalized(invoice.id.to_string()))?;
    let f = Fmt {
        currency: invoice.currency,
        locale: branding.locale,
    };
    let mut layout = Layout::new();
    let top = header(&mut layout, branding, logo, "INVOICE", number);

    let tax_ids = seller_tax_ids(branding, &invoice.seller_tax_ids);
    let seller_bottom = block(
        &mut layout,
        MARGIN,
        top,
        "FROM",
        &seller_lines(branding, tax_ids),
    );
    let mut details = vec![
        ("Invoice number".to_owned(), number.to_owned()),
        ("Issue date".to_owned(), f.date(issued)),
    ];
    if let Some(due) = invoice.due_date {
        details.push(("Due date".to_owned(), f.date(due)));
    }
    if let Some(p) = &invoice.period {
        details.push(("Service period".to_owned(), f.period(p)));
    }
    details.push(("Currency".to_owned(), invoice.currency.code().to_owned()));
    let details_bottom = pairs(&mut layout, HALF + 20.0, top, &details);
    let top = seller_bottom.max(details_bottom) + 12.0;
    let buyer_bottom = block(&mut layout, MARGIN, top, "BILL TO", &buyer_lines(invoice));
    layout.y = buyer_bottom + 16.0;

    // Lines, with a note number for each line the appendix explains.
    let explanations: Vec<(usize, Explanation)> = invoice
        .lines
        .iter()
        .filter_map(|l| explain(l, invoice.currency, branding.locale))
        .enumerate()
        .map(|(i, e)| (i + 1, e))
        .collect();
    table_header(
        &mut layout,
        branding,
        &[
            ("Description", MARGIN, Align::Left),
            ("Qty", COL_QTY, Align::Right),
            ("Unit price", COL_UNIT, Align::Right),
            ("Amount", COL_AMOUNT, Align::Right),
            ("Discount", COL_DISCOUNT, Align::Right),
            ("Tax", COL_TAX, Align::Right),
            ("Total", RIGHT, Align::Right),
        ],
    );
    let mut next_note = 0;
    for line in &invoice.lines {
        let note = crate::explain::explains(line).then(|| {
            next_note += 1;
            next_note
        });
        line_row(&mut layout, &f, line, note);
    }

    // Totals.
    let mut totals = vec![("Subtotal".to_owned(), f.units(invoice.subtotal))];
    if invoice.discount_total.get() != 0 {
        totals.push((
            "Discounts".to_owned(),
            f.money(-invoice.discount_total.get()),
        ));
    }
    totals.push(("Tax".to_owned(), f.units(invoice.tax_total)));
    totals.push(("Total".to_owned(), f.units(invoice.total)));
    if invoice.credit_total.get() != 0 {
        totals.push((
            "Credits applied".to_owned(),
            f.money(-invoice.credit_total.get()),
        ));
    }
    if invoice.amount_paid.get() != 0 {
        totals.push((
            "Amount paid".to_owned(),
            f.money(-invoice.amount_paid.get()),
        ));
    }
    layout.need(totals.len() as f32 * Style::body().leading() + 40.0);
    layout.y += 6.0;
    let label_x = HALF + 20.0;
    let y = layout.y;
    let bottom = pairs(&mut layout, label_x, y, &totals);
    let due_style = Style::body()
        .bold()
        .sized(12.0)
        .colored(branding.accent_color);
    layout.rect(
        label_x,
        bottom + 2.0,
        RIGHT - label_x,
        1.0,
        branding.primary_color,
    );
    layout.text_at(label_x, bottom + 7.0, Align::Left, due_style, "Amount due");
    layout.text_at(
        RIGHT,
        bottom + 7.0,
        Align::Right,
        due_style,
        &f.units(invoice.amount_due),
    );
    layout.y = bottom + 7.0 + due_style.leading() + 10.0;

    section(&mut layout, branding, "Payment");
    layout.paragraph(
        MARGIN,
        CONTENT_WIDTH,
        Style::body(),
        &status_text(invoice, &f),
    );
    if invoice.credited_to_balance.get() != 0 {
        let text = format!(
            "{} was credited to the account's balance.",
            f.units(invoice.credited_to_balance)
        );
        layout.paragraph(MARGIN, CONTENT_WIDTH, Style::body(), &text);
    }
    for grant in &invoice.credits_applied {
        let text = format!(
            "Credit {} applied: {}",
            grant.grant_id,
            f.units(grant.amount)
        );
        layout.paragraph(MARGIN, CONTENT_WIDTH, Style::small(), &text);
    }

    if !invoice.tax_summary.is_empty() {
        section(&mut layout, branding, "Tax summary");
        let label_x = MARGIN;
        let rows: Vec<(String, String)> = invoice
            .tax_summary
            .iter()
            .map(|t| {
                let name = t.display_name.as_deref().unwrap_or(&t.tax_rate_id);
                let place = t
                    .jurisdiction
                    .as_deref()
                    .map_or_else(String::new, |j| format!(" ({j})"));
                let incl = if t.inclusive { ", included" } else { "" };
                (
                    format!(
                        "{name}{place} {} %{incl} on {}",
                        t.percentage.normalize(),
                        f.money(t.taxable_amount)
                    ),
                    f.money(t.amount),
                )
            })
            .collect();
        layout.need(rows.len() as f32 * Style::body().leading());
        let y = layout.y;
        layout.y = pairs(&mut layout, label_x, y, &rows);
    }
    if let Some(note) = &invoice.tax_note {
        layout.y += 4.0;
        layout.paragraph(MARGIN, CONTENT_WIDTH, Style::body().bold(), note);
    }

    if !explanations.is_empty() {
        layout.new_page();
        section(&mut layout, branding, "How the amounts were computed");
        layout.paragraph(
            MARGIN,
            CONTENT_WIDTH,
            Style::small(),
            "Each usage-priced or prorated line, with the steps the billing engine took. \
             Intermediate amounts are exact; each line is rounded once.",
        );
        for (n, e) in &explanations {
            layout.y += 6.0;
            layout.need(Style::body().leading() * 2.0);
            layout.paragraph(
                MARGIN,
                CONTENT_WIDTH,
                Style::body().bold(),
                &format!("[{n}] {}", e.title),
            );
            for step in &e.steps {
                layout.paragraph(MARGIN + 14.0, CONTENT_WIDTH - 14.0, Style::body(), step);
            }
        }
    }

    layout.finish(
        metadata(
            format!("Invoice {number}"),
            invoice.id.to_string(),
            issued,
            branding.legal_name.as_deref(),
        ),
        &footer(branding),
    )
}

fn section(layout: &mut Layout, branding: &Branding, title: &str) {
    let style = Style::body()
        .bold()
        .sized(11.0)
        .colored(branding.primary_color);
    layout.need(style.leading() * 3.0);
    layout.y += 8.0;
    let y = layout.y;
    layout.text_at(MARGIN, y, Align::Left, style, title);
    layout.y += style.leading() + 2.0;
}

/// The credit note's PDF; `invoice` is the one it credits (seller, buyer, number); `logo` as
/// for [`render_invoice`].
pub fn render_credit_note(
    note: &CreditNote,
    invoice: &Invoice,
    branding: &Branding,
    logo: Option<&[u8]>,
) -> Result<RenderedPdf, RenderError> {
    let invoice_number = invoice
        .number
        .as_deref()
        .ok_or_else(|| RenderError::NotFinalized(invoice.id.to_string()))?;
    let f = Fmt {
        currency: note.currency,
        locale: branding.locale,
    };
    let number = note.id.to_string();
    let mut layout = Layout::new();
    let top = header(&mut layout, branding, logo, "CREDIT NOTE", &number);
    let tax_ids = seller_tax_ids(branding, &invoice.seller_tax_ids);
    let seller_bottom = block(
        &mut layout,
        MARGIN,
        top,
        "FROM",
        &seller_lines(branding, tax_ids),
    );
    let reason = match note.reason {
        CreditNoteReason::Refund => "Refund",
        CreditNoteReason::Void => "Invoice voided",
    };
    let details = vec![
        ("Credit note".to_owned(), number.clone()),
        ("Issue date".to_owned(), f.date(note.created_at)),
        ("Credits invoice".to_owned(), invoice_number.to_owned()),
        ("Reason".to_owned(), reason.to_owned()),
        ("Currency".to_owned(), note.currency.code().to_owned()),
    ];
    let details_bottom = pairs(&mut layout, HALF + 20.0, top, &details);
    let top = seller_bottom.max(details_bottom) + 12.0;
    layout.y = block(
        &mut layout,
        MARGIN,
        top,
        "CREDITED TO",
        &buyer_lines(invoice),
    ) + 16.0;

    table_header(
        &mut layout,
        branding,
        &[
            ("Description", MARGIN, Align::Left),
            ("Amount", RIGHT, Align::Right),
        ],
    );
    let description = match (&note.memo, note.reason) {
        (Some(memo), _) => format!("{reason} of invoice {invoice_number}: {memo}"),
        (None, _) => format!("{reason} of invoice {invoice_number}"),
    };
    let top = layout.y;
    layout.paragraph(MARGIN + 4.0, 380.0, Style::body(), &description);
    layout.text_at(
        RIGHT - 4.0,
        top,
        Align::Right,
        Style::body(),
        &f.units(note.amount),
    );
    layout.y += 4.0;
    layout.rule(RULE);
    layout.y += 8.0;
    let label_x = HALF + 20.0;
    let y = layout.y;
    let bottom = pairs(
        &mut layout,
        label_x,
        y,
        &[("Of which tax".to_owned(), f.units(note.tax_amount))],
    );
    let total_style = Style::body()
        .bold()
        .sized(12.0)
        .colored(branding.accent_color);
    layout.text_at(
        label_x,
        bottom + 4.0,
        Align::Left,
        total_style,
        "Total credited",
    );
    layout.text_at(
        RIGHT,
        bottom + 4.0,
        Align::Right,
        total_style,
        &f.units(note.amount),
    );
    layout.y = bottom + 4.0 + total_style.leading() + 10.0;
    let how = if note.credited_to_balance {
        "The amount was credited to the account's balance and will be applied to future invoices."
            .to_owned()
    } else {
        match &note.refund {
            Some(r) => format!("Refunded to the original payment method (refund {r})."),
            None => "The amount is owed back to the customer.".to_owned(),
        }
    };
    layout.paragraph(MARGIN, CONTENT_WIDTH, Style::body(), &how);
    if let Some(n) = &invoice.tax_note {
        layout.y += 4.0;
        layout.paragraph(MARGIN, CONTENT_WIDTH, Style::body().bold(), n);
    }
    layout.finish(
        metadata(
            format!("Credit note {number}"),
            number.clone(),
            note.created_at,
            branding.legal_name.as_deref(),
        ),
        &footer(branding),
    )
}
