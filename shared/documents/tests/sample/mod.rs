//! A finalized invoice built by the engine itself (pricing, proration, discount, tax,
//! credit), the tenant's branding and a credit note on it: what the tests, the bench and
//! `docs/invoice-page1.png` render.

use billing_domain::billing::invoice::{DraftFacts, Invoice};
use billing_domain::billing::invoice_draft::{build_invoice, InvoiceInput};
use billing_domain::billing::periods::Period;
use billing_domain::billing::proration::{charge_for, ProrationConvention};
use billing_domain::billing::subscription::{BillingReason, CollectionMethod};
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::customers::account::Address;
use billing_domain::customers::erasure::BillingDetails;
use billing_domain::documents::branding::{Branding, BrandingPatch};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, CreditNoteId, InvoiceId};
use billing_domain::kernel::money::Money;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn branding() -> Branding {
    let patch: BrandingPatch = serde_json::from_value(json!({
        "legal_name": "Nimbus Cloud GmbH",
        "address": {"line1": "Torstraße 12", "city": "Berlin", "postal_code": "10119", "country": "DE"},
        "tax_ids": ["DE136695976"],
        "support_email": "billing@nimbus.test",
        "primary_color": "#0f172a",
        "accent_color": "#0e7490",
        "footer": "Nimbus Cloud GmbH · HRB 123456 B · Amtsgericht Charlottenburg · IBAN DE89 3704 0044 0532 0130 00",
        "locale": "en-GB"
    }))
    .unwrap();
    Branding::default()
        .patched(patch, ts("2026-01-01T00:00:00Z"))
        .unwrap()
}

pub fn invoice() -> Invoice {
    let eur = Currency::from_code("eur").unwrap();
    let period = Period::new(ts("2026-02-01T00:00:00Z"), ts("2026-03-01T00:00:00Z")).unwrap();
    let upgrade = charge_for(
        Money::new(9900, eur),
        &Period::new(ts("2026-02-10T00:00:00Z"), ts("2026-03-01T00:00:00Z")).unwrap(),
        &period,
        ProrationConvention::CalendarDaysInclusive,
        &TimeZone::UTC,
    )
    .unwrap();
    let vat =
        json!([{"id": "txr_de", "percentage": "19", "display_name": "USt", "jurisdiction": "DE"}]);
    let input: InvoiceInput = serde_json::from_value(json!({
        "currency": "eur",
        "lines": [
            {"id": "base", "description": "Team plan", "period": period,
             "source": {"type": "charge", "model": {"model": "flat_fee", "amount": 4900},
                        "usage": {"kind": "quantity", "quantity": "1"}},
             "tax_rates": vat},
            {"id": "api", "description": "API requests (Frankfurt region, metered)", "period": period,
             "source": {"type": "charge",
                        "model": {"model": "graduated", "tiers": [
                            {"up_to": "10000", "unit_price": "0"},
                            {"up_to": "100000", "unit_price": "0.0008"},
                            {"up_to": null, "unit_price": "0.0005", "flat_fee": 1500}]},
                        "usage": {"kind": "quantity", "quantity": "123456"}},
             "tax_rates": vat},
            {"id": "seats", "description": "Upgrade to Business (prorated)",
             "source": {"type": "proration", "item": upgrade},
             "tax_rates": vat},
            {"id": "setup", "description": "Onboarding session",
             "source": {"type": "fixed", "amount": 15000, "quantity": "1"},
             "tax_rates": vat}
        ],
        "discounts": [{"type": "percent_off", "id": "WELCOME10", "percent": "10", "applies_to": ["base"]}],
        "credits": [{"id": "cred_goodwill", "amount": 2000}]
    }))
    .unwrap();
    let built = build_invoice(&input).unwrap();
    let facts = DraftFacts {
        id: InvoiceId::from_ulid(ulid::Ulid::from_parts(1_769_904_000_000, 42)),
        account_id: AccountId::from_ulid(ulid::Ulid::from_parts(1_767_225_600_000, 7)),
        subscription_id: None,
        test_clock: None,
        billing_reason: BillingReason::SubscriptionCycle,
        period: Some(period),
        collection_method: CollectionMethod::SendInvoice,
    };
    let mut draft = Invoice::draft(facts, built, ts("2026-03-01T00:00:00Z"));
    draft.billing_details = Some(BillingDetails {
        name: Some("Müller & Søn Logistik AG".into()),
        address: Some(Address {
            line1: Some("Bahnhofstrasse 1".into()),
            line2: None,
            city: Some("Zürich".into()),
            state: None,
            postal_code: Some("8001".into()),
            country: Some("CH".into()),
        }),
        vat_id: Some("CHE-123.456.788".into()),
    });
    draft.seller_tax_ids = vec!["DE136695976".into()];
    draft.buyer_tax_ids = vec!["CHE-123.456.788 MWST".into()];
    draft
        .finalize("NIM-000042".into(), Some(14), ts("2026-03-01T00:05:00Z"))
        .unwrap()
}

pub fn credit_note(invoice: &Invoice) -> CreditNote {
    let mut invoice = invoice.clone();
    invoice.amount_paid = invoice.amount_due;
    let note = CreditNote::for_void(
        CreditNoteId::from_ulid(ulid::Ulid::from_parts(1_772_400_000_000, 9)),
        &invoice,
        true,
        ts("2026-03-05T09:00:00Z"),
    );
    note.expect("a paid invoice voided gives a credit note")
}
