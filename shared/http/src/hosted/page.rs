//! The hosted invoice page as HTML: one document, its style inline (allowed by its hash in
//! the CSP), no inline script, no external asset but Stripe.js when Stripe takes the card.
//! Every value that comes from a tenant or a customer goes through [`escape`].

use std::fmt::Write;

use base64::Engine;
use billing_app::collection::CardForm;
use billing_app::hosted::{HostedInvoice, PayState};
use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::billing::invoice_draft::InvoiceLine;
use billing_domain::collection::payment::PaymentStatus;
use billing_domain::customers::account::Address;
use billing_domain::hosted::link;
use billing_domain::kernel::format::format_human;
use billing_domain::kernel::html::escape;
use billing_domain::kernel::money::Money;
use jiff::Timestamp;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

/// Where the page's script is served (same origin: `script-src 'self'`).
pub const SCRIPT_PATH: &str = "/i/assets/hosted.js";

const STRIPE_JS: &str = "https://js.stripe.com/v3/";

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1f36;background:#f6f8fa}\
main{max-width:760px;margin:0 auto;padding:24px 16px}\
.card{background:#fff;border:1px solid #e3e8ee;border-radius:8px;padding:24px;margin-bottom:16px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:0 0 8px}\
.muted{color:#697386;font-size:14px}\
.parties{display:flex;flex-wrap:wrap;gap:24px}.parties>div{flex:1 1 240px}\
.status{display:inline-block;padding:2px 10px;border-radius:12px;font-size:13px;font-weight:600;text-transform:uppercase}\
.status-open{background:#fff4e5;color:#a35200}.status-paid{background:#e6f6ec;color:#0e6245}\
.status-void,.status-uncollectible{background:#eceff3;color:#4f566b}\
.status-action{background:#fdecef;color:#a41c4e}\
table{width:100%;border-collapse:collapse;font-size:14px}\
th,td{text-align:left;padding:8px 4px;border-bottom:1px solid #e3e8ee;vertical-align:top}\
td.n,th.n{text-align:right;white-space:nowrap}\
.totals td{border:0;padding:4px}.totals tr.due td{font-weight:700;font-size:17px;border-top:2px solid #1a1f36}\
.due-amount{font-size:28px;font-weight:700}\
label{display:block;font-size:14px;margin:12px 0 4px}\
input[type=text]{width:100%;padding:10px;font-size:16px;border:1px solid #c1c9d2;border-radius:6px}\
button{margin-top:16px;width:100%;padding:12px;font-size:16px;font-weight:600;color:#fff;background:var(--primary,#635bff);border:0;border-radius:6px;cursor:pointer}\
.download{display:inline-block;margin-top:8px;color:var(--accent,#635bff);font-weight:600}\
.brand{border-top:4px solid var(--primary,#635bff)}\
.logo{display:block;max-width:200px;max-height:64px;margin-bottom:8px}\
footer{font-size:13px;color:#697386;text-align:center;padding:8px 0 24px}\
button[disabled]{opacity:.6}\
.error{background:#fdecef;color:#a41c4e;border-radius:6px;padding:10px;margin-bottom:12px}\
.note{font-size:14px;color:#4f566b;margin-top:12px}\
#card-element{padding:12px;border:1px solid #c1c9d2;border-radius:6px}\
@media (max-width:520px){main{padding:8px}.card{padding:16px}th.hide,td.hide{display:none}}";

/// The tenant's colours as CSS variables, appended to [`STYLE`] (the page's one `<style>`,
/// allowed by its hash). Colours are `#rrggbb` by construction, so nothing else can get in.
pub fn brand_style(view: &HostedInvoice) -> String {
    let b = &view.branding;
    format!(
        ":root{{--primary:{};--accent:{}}}",
        String::from(b.primary_color),
        String::from(b.accent_color)
    )
}

/// `'sha256-…'` of the page's style: [`STYLE`] and the brand's colours.
fn style_hash(brand: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(STYLE.as_bytes());
    digest.update(brand.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.finalize())
    )
}

/// The page's Content-Security-Policy: no inline script anywhere; Stripe's origins only
/// when Stripe.js takes the card; the style (with `brand`'s colours) by its hash.
pub fn content_security_policy(stripe: bool, brand: &str) -> String {
    let (script, frame, connect) = if stripe {
        (
            " https://js.stripe.com",
            "https://js.stripe.com https://hooks.stripe.com",
            "https://api.stripe.com",
        )
    } else {
        ("", "'none'", "'none'")
    };
    format!(
        "default-src 'none'; style-src {style}; script-src 'self'{script}; frame-src {frame}; \
         connect-src {connect}; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'",
        style = style_hash(brand)
    )
}

/// Whether a page loads Stripe.js.
pub fn uses_stripe(view: &HostedInvoice) -> bool {
    match &view.pay {
        PayState::Card(CardForm::Stripe { .. }) => true,
        PayState::Action {
            publishable_key, ..
        } => publishable_key.is_some(),
        _ => false,
    }
}

fn money(minor: i64, invoice: &Invoice) -> String {
    escape(&format_human(Money::new(minor, invoice.currency)))
}

fn date(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d").to_string()
}

/// A short page with a title and a sentence (not found, refused, failed).
pub fn message(title: &str, text: &str) -> String {
    shell(
        title,
        &format!(
            "<div class=\"card\"><h1>{}</h1><p>{}</p></div>",
            escape(title),
            escape(text)
        ),
        false,
        "",
    )
}

fn shell(title: &str, body: &str, stripe: bool, brand: &str) -> String {
    let stripe_js = if stripe {
        format!("<script src=\"{STRIPE_JS}\"></script>")
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{STYLE}{brand}</style>{stripe_js}\
         <script src=\"{SCRIPT_PATH}\" defer></script></head>\
         <body><main>{body}</main></body></html>",
        title = escape(title)
    )
}

/// The invoice page served under `token`; `error` is shown above the pay form.
pub fn invoice_page(token: &str, view: &HostedInvoice, error: Option<&str>) -> String {
    let invoice = &view.invoice;
    let number = invoice.number.as_deref().unwrap_or("Invoice");
    let mut body = String::new();
    header(&mut body, token, view);
    parties(&mut body, view);
    lines(&mut body, invoice);
    pay(&mut body, token, view, error);
    let _ = write!(
        body,
        "<div class=\"card\"><a class=\"download\" id=\"download-pdf\" href=\"/i/{}/pdf\">Download PDF</a></div>",
        escape(token)
    );
    if let Some(footer) = &view.branding.footer {
        let _ = write!(body, "<footer>{}</footer>", escape(footer));
    }
    let title = format!("{number} from {}", view.seller.name);
    shell(&title, &body, uses_stripe(view), &brand_style(view))
}

fn status_badge(view: &HostedInvoice) -> (&'static str, &'static str) {
    let invoice = &view.invoice;
    match invoice.status {
        InvoiceStatus::Paid => ("paid", "Paid"),
        InvoiceStatus::Void => ("void", "Void"),
        InvoiceStatus::Uncollectible => ("uncollectible", "Uncollectible"),
        InvoiceStatus::Draft => ("void", "Draft"),
        InvoiceStatus::Open if invoice.payment_status == Some(PaymentStatus::RequiresAction) => {
            ("action", "Action required")
        }
        InvoiceStatus::Open if invoice.overdue => ("action", "Overdue"),
        InvoiceStatus::Open => ("open", "Open"),
    }
}

fn header(out: &mut String, token: &str, view: &HostedInvoice) {
    let invoice = &view.invoice;
    let (class, label) = status_badge(view);
    let _ = write!(out, "<div class=\"card brand\">");
    if view.branding.logo.is_some() {
        let _ = write!(
            out,
            "<img class=\"logo\" id=\"logo\" src=\"/i/{}/logo\" alt=\"{}\">",
            escape(token),
            escape(&view.seller.name)
        );
    }
    let _ = write!(
        out,
        "<p class=\"muted\">{seller}</p>\
         <h1>Invoice {number} <span class=\"status status-{class}\" id=\"status\">{label}</span></h1>\
         <p class=\"due-amount\" id=\"amount-due\">{headline}</p><p class=\"muted\">",
        seller = escape(&view.seller.name),
        number = escape(invoice.number.as_deref().unwrap_or("")),
        headline = headline(invoice),
    );
    if let Some(at) = invoice.finalized_at {
        let _ = write!(out, "Issued {}", date(at));
    }
    if let Some(at) = invoice.due_date {
        let _ = write!(out, " · Due {}", date(at));
    }
    if let Some(at) = invoice.paid_at {
        let _ = write!(out, " · Paid {}", date(at));
    }
    if let Some(period) = &invoice.period {
        let _ = write!(
            out,
            " · Service {} – {}",
            date(period.start),
            date(period.end)
        );
    }
    out.push_str("</p></div>");
}

/// The big figure: what is due while the invoice is open; once paid, what was paid (the
/// total when credits covered it all); void or uncollectible, the total, struck by the
/// badge next to it.
fn headline(invoice: &Invoice) -> String {
    match invoice.status {
        InvoiceStatus::Paid => {
            let paid = match invoice.amount_paid.get() {
                0 => invoice.total.get(),
                paid => paid,
            };
            format!("{} paid", money(paid, invoice))
        }
        InvoiceStatus::Void | InvoiceStatus::Uncollectible => money(invoice.total.get(), invoice),
        InvoiceStatus::Open | InvoiceStatus::Draft => {
            format!("{} due", money(remaining(invoice), invoice))
        }
    }
}

fn remaining(invoice: &Invoice) -> i64 {
    invoice.amount_remaining().get()
}

fn parties(out: &mut String, view: &HostedInvoice) {
    let buyer = &view.buyer;
    out.push_str("<div class=\"card parties\"><div><h2>From</h2>");
    let _ = write!(
        out,
        "<div id=\"seller-name\">{}</div>",
        escape(&view.seller.name)
    );
    if let Some(address) = &view.branding.address {
        address_line(out, address);
    }
    if let Some(email) = &view.branding.support_email {
        let _ = write!(out, "<div class=\"muted\">{}</div>", escape(email));
    }
    for id in &view.seller.tax_ids {
        let _ = write!(out, "<div class=\"muted\">Tax id {}</div>", escape(id));
    }
    out.push_str("</div><div><h2>Bill to</h2>");
    if let Some(name) = &buyer.name {
        let _ = write!(out, "<div id=\"buyer-name\">{}</div>", escape(name));
    }
    if let Some(email) = &buyer.email {
        let _ = write!(out, "<div class=\"muted\">{}</div>", escape(email));
    }
    if let Some(address) = &buyer.address {
        address_line(out, address);
    }
    for id in &buyer.tax_ids {
        let _ = write!(out, "<div class=\"muted\">Tax id {}</div>", escape(id));
    }
    out.push_str("</div></div>");
}

fn address_line(out: &mut String, address: &Address) {
    let parts = [
        &address.line1,
        &address.line2,
        &address.postal_code,
        &address.city,
        &address.state,
        &address.country,
    ];
    let text: Vec<&str> = parts.iter().filter_map(|p| p.as_deref()).collect();
    if !text.is_empty() {
        let _ = write!(
            out,
            "<div class=\"muted\">{}</div>",
            escape(&text.join(", "))
        );
    }
}

fn lines(out: &mut String, invoice: &Invoice) {
    out.push_str(
        "<div class=\"card\"><table><thead><tr><th>Description</th><th class=\"n hide\">Qty</th>\
         <th class=\"n hide\">Unit price</th><th class=\"n\">Amount</th></tr></thead><tbody>",
    );
    for line in &invoice.lines {
        let mut description = escape(&line.description);
        if let Some(period) = &line.period {
            let _ = write!(
                description,
                "<div class=\"muted\">{} – {}</div>",
                date(period.start),
                date(period.end)
            );
        }
        for discount in &line.discounts {
            let _ = write!(
                description,
                "<div class=\"muted\">Discount −{}</div>",
                money(discount.amount, invoice)
            );
        }
        for tax in &line.taxes {
            let _ = write!(
                description,
                "<div class=\"muted\">Tax {}</div>",
                money(tax.amount, invoice)
            );
        }
        let (quantity, unit) = quantity_and_unit(line, invoice);
        let _ = write!(
            out,
            "<tr><td>{description}</td><td class=\"n hide\">{}</td><td class=\"n hide\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            escape(&quantity),
            unit,
            money(line.amount, invoice),
        );
    }
    out.push_str("</tbody></table><table class=\"totals\">");
    let mut row = |label: &str, value: String, class: &str| {
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td class=\"n\">{value}</td></tr>",
            escape(label)
        );
    };
    row("Subtotal", money(invoice.subtotal.get(), invoice), "");
    if invoice.discount_total.get() != 0 {
        row(
            "Discounts",
            format!("−{}", money(invoice.discount_total.get(), invoice)),
            "",
        );
    }
    for tax in &invoice.tax_summary {
        let name = tax.display_name.as_deref().unwrap_or("Tax");
        let label = format!(
            "{name} {}%{} on {}",
            tax.percentage.normalize(),
            if tax.inclusive { " (included)" } else { "" },
            format_human(Money::new(tax.taxable_amount, invoice.currency)),
        );
        row(&label, money(tax.amount, invoice), "");
    }
    row("Total", money(invoice.total.get(), invoice), "");
    if invoice.credit_total.get() != 0 {
        row(
            "Credits applied",
            format!("−{}", money(invoice.credit_total.get(), invoice)),
            "",
        );
    }
    if invoice.amount_paid.get() != 0 {
        row(
            "Paid",
            format!("−{}", money(invoice.amount_paid.get(), invoice)),
            "",
        );
    }
    row("Amount due", money(remaining(invoice), invoice), "due");
    out.push_str("</table>");
    if let Some(note) = &invoice.tax_note {
        let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
    }
    out.push_str("</div>");
}

/// A line's Qty and Unit price cells: the engine's quantity and unit price where it priced
/// per unit; a flat line (a plan's fee, a one-off charge, a proration) is one of its amount,
/// or its amount over its quantity when that is exact in the currency.
fn quantity_and_unit(line: &InvoiceLine, invoice: &Invoice) -> (String, String) {
    let quantity = line.quantity.unwrap_or(Decimal::ONE);
    let unit = line.unit_price.or_else(|| {
        let amount = Decimal::new(line.amount, u32::from(invoice.currency.exponent()));
        amount.checked_div(quantity).filter(|u| {
            u.checked_mul(quantity) == Some(amount)
                && u.normalize().scale() <= u32::from(invoice.currency.exponent())
        })
    });
    let unit = match unit {
        Some(p) => match Money::from_decimal_exact(p, invoice.currency) {
            Ok(m) => escape(&format_human(m)),
            Err(_) => format!(
                "{} {}",
                p.normalize(),
                escape(&invoice.currency.api_code().to_uppercase())
            ),
        },
        None => String::new(),
    };
    (quantity.normalize().to_string(), unit)
}

fn pay(out: &mut String, token: &str, view: &HostedInvoice, error: Option<&str>) {
    let invoice = &view.invoice;
    let failure = error.or(view.last_failure.as_deref());
    let error_html = failure
        .map(|e| format!("<div class=\"error\" id=\"error\">{}</div>", escape(e)))
        .unwrap_or_default();
    let raw_token = token;
    let token = escape(token);
    match &view.pay {
        PayState::Closed => {}
        PayState::Card(CardForm::Unavailable) => {
            let _ = write!(
                out,
                "<div class=\"card\"><h2>Pay</h2>{error_html}<p>This invoice cannot be paid \
                 by card here; please contact {}.</p></div>",
                escape(&view.seller.name)
            );
        }
        PayState::Card(form) => {
            let _ = write!(
                out,
                "<div class=\"card\"><h2>Pay {due}</h2>{error_html}\
                 <form method=\"post\" action=\"/i/{token}/pay\" id=\"pay-form\"{stripe}>\
                 <input type=\"hidden\" name=\"form_token\" value=\"{form_token}\">\
                 <input type=\"hidden\" name=\"version\" value=\"{version}\">",
                due = money(remaining(invoice), invoice),
                stripe = match form {
                    CardForm::Stripe { publishable_key } =>
                        format!(" data-stripe-key=\"{}\"", escape(publishable_key)),
                    _ => String::new(),
                },
                form_token = link::form_token(raw_token, "pay"),
                version = invoice.version,
            );
            match form {
                CardForm::Stripe { .. } => out.push_str(
                    "<label>Card</label><div id=\"card-element\"></div>\
                     <input type=\"hidden\" name=\"card\" id=\"card\">",
                ),
                _ => out.push_str(
                    "<label for=\"card\">Card number (sandbox: a Stripe test card, such as \
                     4242 4242 4242 4242)</label>\
                     <input type=\"text\" name=\"card\" id=\"card\" inputmode=\"numeric\" \
                     autocomplete=\"cc-number\" required>",
                ),
            }
            out.push_str("<button type=\"submit\" id=\"pay\">Pay</button></form></div>");
        }
        PayState::Action {
            client_secret,
            publishable_key,
            ..
        } => {
            let stripe = match (client_secret, publishable_key) {
                (Some(secret), Some(key)) => format!(
                    " data-stripe-key=\"{}\" data-client-secret=\"{}\"",
                    escape(key),
                    escape(secret)
                ),
                _ => String::new(),
            };
            let explain = if stripe.is_empty() {
                "Your bank asks you to confirm this payment (the sandbox's 3-D Secure check)."
            } else {
                "Your bank asks you to confirm this payment."
            };
            let _ = write!(
                out,
                "<div class=\"card\" id=\"action\"><h2>Confirm your payment</h2>{error_html}\
                 <p>{explain}</p>\
                 <form method=\"post\" action=\"/i/{token}/authenticate\" id=\"authenticate-form\"{stripe}>\
                 <input type=\"hidden\" name=\"form_token\" value=\"{form_token}\">\
                 <button type=\"submit\" id=\"authenticate\">Complete authentication</button></form></div>",
                form_token = link::form_token(raw_token, "authenticate"),
            );
        }
    }
}

/// The page's script: keeps a form from being sent twice by a double click, and drives
/// Stripe.js where the form says Stripe takes the card (`data-stripe-key`).
pub const SCRIPT: &str = include_str!("hosted.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn the_policy_allows_the_style_by_hash_and_no_inline_script() {
        let brand = ":root{--primary:#112233;--accent:#445566}";
        let policy = content_security_policy(false, brand);
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-inline"));
        assert!(!policy.contains("stripe"));
        let digest = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(format!("{STYLE}{brand}")));
        assert!(policy.contains(&format!("style-src 'sha256-{digest}'")));
        assert!(
            content_security_policy(true, "").contains("script-src 'self' https://js.stripe.com;")
        );
    }
}
