//! Which tax applies to an invoice: from the seller's settings, the customer (billing
//! address, `tax_exempt`, VAT id) and the invoice date, the rates of every line, or why it
//! carries none.
//!
//! The rules, in order:
//!
//! 1. No tax settings: no tax (`not_configured`), as before tax existed.
//! 2. `tax_exempt: exempt`: no tax, the invoice says the customer is exempt. `reverse`: no
//!    tax, the reverse-charge note.
//! 3. No billing address country: the seller's own jurisdiction applies (`address_missing`,
//!    said on the invoice), so a sale is never silently untaxed. This is the fallback we
//!    chose over refusing to finalize: billing runs unattended, and the seller's domestic rate
//!    is what a tax authority expects when the customer's location is unknown.
//! 4. Seller and customer both in the EU, in different member states: with a valid VAT id
//!    (the customer's business) the reverse charge (0 %, Article 196 of the VAT Directive,
//!    both VAT ids on the invoice); without one (a consumer) the customer's country's rates
//!    (the One-Stop Shop). Same member state: the domestic rates.
//! 5. Otherwise the customer's jurisdiction's rates when the seller is registered there (its
//!    home, or a listed registration), else no tax (`not_registered`).
//!
//! A taxable sale needs at least one rate effective at the invoice date for the jurisdiction
//! (country, region, postal-code prefix); without one resolution fails with
//! [`TaxError::NoRate`], and the invoice is not drafted untaxed.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::invoice_draft::{self, LineInput};
use crate::tax::rates::{TaxExempt, TaxRate, TaxSettings};
use crate::tax::vat_id::{self, in_eu};

/// Why a line is taxed as it is; recorded on each line and the invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxReason {
    NotConfigured,
    /// The seller's own jurisdiction.
    Domestic,
    /// A jurisdiction the seller registered in.
    Registered,
    /// An EU consumer in another member state: their country's rate (OSS).
    EuOneStopShop,
    /// An EU business in another member state with a valid VAT id.
    EuReverseCharge,
    CustomerExempt,
    CustomerReverseCharge,
    /// Outside every jurisdiction the seller charges tax in.
    NotRegistered,
    /// No billing address country: the seller's jurisdiction.
    AddressMissing,
}

impl TaxReason {
    /// The note printed on the invoice, if any.
    pub fn note(self) -> Option<&'static str> {
        match self {
            TaxReason::EuReverseCharge | TaxReason::CustomerReverseCharge => Some(
                "Reverse charge: VAT to be accounted for by the recipient \
                 (Article 196, Council Directive 2006/112/EC).",
            ),
            TaxReason::CustomerExempt => Some("Exempt from tax: the customer is tax exempt."),
            TaxReason::NotRegistered => {
                Some("No tax charged: the customer is outside the seller's tax registrations.")
            }
            TaxReason::AddressMissing => {
                Some("Taxed at the seller's rate: the customer's billing address has no country.")
            }
            TaxReason::NotConfigured
            | TaxReason::Domestic
            | TaxReason::Registered
            | TaxReason::EuOneStopShop => None,
        }
    }
}

/// What resolution needs to know about the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Customer<'a> {
    pub country: Option<&'a str>,
    pub region: Option<&'a str>,
    pub postal_code: Option<&'a str>,
    pub exempt: TaxExempt,
    /// As stored on the account: already validated.
    pub vat_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxError {
    #[error(
        "no tax rate for {jurisdiction} is effective on {at}: create one (or load the EU rates) \
         or change the tax registrations"
    )]
    NoRate { jurisdiction: String, at: Timestamp },
}

/// The tax of one invoice: its lines' rates, the reason, and the ids printed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceTax {
    pub reason: TaxReason,
    pub rates: Vec<invoice_draft::TaxRate>,
    pub seller_tax_ids: Vec<String>,
    pub buyer_tax_ids: Vec<String>,
}

impl InvoiceTax {
    /// Gives every line without rates of its own the resolved ones, inclusive or
    /// exclusive as its price's `tax_behavior` says when it says.
    pub fn apply(&self, lines: &mut [LineInput]) {
        for line in lines.iter_mut().filter(|l| l.tax_rates.is_empty()) {
            line.tax_rates.clone_from(&self.rates);
            if let Some(behavior) = line.tax_behavior {
                for rate in &mut line.tax_rates {
                    rate.inclusive = behavior.inclusive();
                }
            }
        }
    }

    /// Records the reason on built lines.
    pub fn mark(&self, lines: &mut [invoice_draft::InvoiceLine]) {
        for line in lines {
            line.tax_reason = Some(self.reason);
        }
    }
}

/// Resolves the tax of an invoice dated `at` (see the module docs for the rules).
pub fn resolve(
    settings: Option<&TaxSettings>,
    rates: &[TaxRate],
    customer: &Customer<'_>,
    at: Timestamp,
) -> Result<InvoiceTax, TaxError> {
    let Some(settings) = settings else {
        return Ok(untaxed(TaxReason::NotConfigured, None, customer));
    };
    let seller = Some(settings);
    let (reason, country, region, postal_code) = match customer.exempt {
        TaxExempt::Exempt => return Ok(untaxed(TaxReason::CustomerExempt, seller, customer)),
        TaxExempt::Reverse => {
            return Ok(untaxed(TaxReason::CustomerReverseCharge, seller, customer))
        }
        TaxExempt::None => match customer.country {
            None => (
                TaxReason::AddressMissing,
                settings.country.as_str(),
                settings.region.as_deref(),
                None,
            ),
            Some(c) => (
                TaxReason::Domestic,
                c,
                customer.region,
                customer.postal_code,
            ),
        },
    };
    let eu_business = customer
        .vat_id
        .and_then(|v| vat_id::parse(v).ok())
        .is_some_and(|v| in_eu(v.country) && v.country != settings.country);
    let reason = if reason == TaxReason::AddressMissing {
        reason
    } else if in_eu(&settings.country) && in_eu(country) && country != settings.country {
        if eu_business {
            return Ok(untaxed(TaxReason::EuReverseCharge, seller, customer));
        }
        TaxReason::EuOneStopShop
    } else if !settings.registered(country, region) {
        return Ok(untaxed(TaxReason::NotRegistered, seller, customer));
    } else if country == settings.country {
        TaxReason::Domestic
    } else {
        TaxReason::Registered
    };
    let inclusive = settings.prices_include_tax;
    let line_rates: Vec<invoice_draft::TaxRate> = rates
        .iter()
        .filter(|r| r.effective_at(at) && r.jurisdiction.covers(country, region, postal_code))
        .map(|r| invoice_draft::TaxRate {
            id: r.id.to_string(),
            percentage: r.percentage,
            inclusive: r.inclusive.unwrap_or(inclusive),
            display_name: Some(r.display_name.clone()),
            jurisdiction: Some(r.jurisdiction.label()),
        })
        .collect();
    if line_rates.is_empty() {
        let jurisdiction = [Some(country), region]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        return Err(TaxError::NoRate {
            jurisdiction: jurisdiction.join("-"),
            at,
        });
    }
    Ok(InvoiceTax {
        reason,
        rates: line_rates,
        ..untaxed(reason, seller, customer)
    })
}

fn untaxed(reason: TaxReason, seller: Option<&TaxSettings>, customer: &Customer<'_>) -> InvoiceTax {
    InvoiceTax {
        reason,
        rates: Vec::new(),
        seller_tax_ids: seller.map(|s| s.tax_ids.clone()).unwrap_or_default(),
        buyer_tax_ids: seller
            .and(customer.vat_id)
            .map(|v| vec![v.to_owned()])
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice_draft::{build_invoice, InvoiceInput, LineSource};
    use crate::kernel::currency::Currency;
    use crate::kernel::ids::TaxRateId;
    use crate::tax::rates::{NewTaxRate, Registration, TaxBehavior};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rate(n: u64, json: serde_json::Value) -> TaxRate {
        let input: NewTaxRate = serde_json::from_value(json).unwrap();
        TaxRate::create(
            TaxRateId::from_ulid(ulid::Ulid::from_parts(n, n.into())),
            input,
            None,
            at("2026-01-01T00:00:00Z"),
        )
        .unwrap()
    }

    fn vat(n: u64, country: &str, percent: &str) -> TaxRate {
        rate(
            n,
            serde_json::json!({"display_name": format!("{country} VAT"), "percentage": percent,
                "country": country, "tax_type": "vat", "effective_from": "2000-01-01T00:00:00Z"}),
        )
    }

    fn rates() -> Vec<TaxRate> {
        vec![
            vat(1, "DE", "19"),
            vat(2, "FR", "20"),
            rate(
                3,
                serde_json::json!({"display_name": "CA sales tax", "percentage": "7.25",
                "country": "US", "region": "CA", "tax_type": "sales_tax",
                "effective_from": "2000-01-01T00:00:00Z"}),
            ),
            rate(
                4,
                serde_json::json!({"display_name": "LA district", "percentage": "2.25",
                "country": "US", "region": "CA", "postal_code_prefix": "900", "tax_type": "sales_tax",
                "effective_from": "2000-01-01T00:00:00Z"}),
            ),
        ]
    }

    fn german_seller() -> TaxSettings {
        TaxSettings {
            country: "DE".into(),
            region: None,
            registrations: vec![],
            prices_include_tax: false,
            tax_ids: vec!["DE136695976".into()],
            verify_vat_ids_online: false,
        }
    }

    fn customer<'a>(country: &'a str) -> Customer<'a> {
        Customer {
            country: Some(country),
            region: None,
            postal_code: None,
            exempt: TaxExempt::None,
            vat_id: None,
        }
    }

    fn percents(tax: &InvoiceTax) -> Vec<String> {
        tax.rates.iter().map(|r| r.percentage.to_string()).collect()
    }

    const DAY: &str = "2026-03-01T00:00:00Z";

    #[test]
    fn eu_rules() {
        let seller = german_seller();
        let rates = rates();
        let resolve = |c: &Customer<'_>| resolve(Some(&seller), &rates, c, at(DAY)).unwrap();
        // Domestic: the seller's rate.
        let de = resolve(&customer("DE"));
        assert_eq!(
            (de.reason, percents(&de)),
            (TaxReason::Domestic, vec!["19".into()])
        );
        // A French consumer: the French rate (OSS).
        let fr = resolve(&customer("FR"));
        assert_eq!(
            (fr.reason, percents(&fr)),
            (TaxReason::EuOneStopShop, vec!["20".into()])
        );
        // A French business with a valid VAT id: reverse charge, both ids.
        let business = Customer {
            vat_id: Some("FR23334175221"),
            ..customer("FR")
        };
        let rc = resolve(&business);
        assert_eq!(rc.reason, TaxReason::EuReverseCharge);
        assert!(rc.rates.is_empty() && rc.reason.note().unwrap().contains("Article 196"));
        assert_eq!(
            (rc.seller_tax_ids, rc.buyer_tax_ids),
            (
                vec!["DE136695976".to_owned()],
                vec!["FR23334175221".to_owned()]
            )
        );
        // A German business: domestic, VAT charged.
        let domestic_business = Customer {
            vat_id: Some("DE136695976"),
            ..customer("DE")
        };
        assert_eq!(resolve(&domestic_business).reason, TaxReason::Domestic);
        // Outside the EU and the registrations: no tax.
        let us = resolve(&customer("US"));
        assert_eq!((us.reason, us.rates.len()), (TaxReason::NotRegistered, 0));
    }

    #[test]
    fn us_states_exempt_reverse_and_missing_address() {
        let seller = TaxSettings {
            country: "US".into(),
            region: Some("CA".into()),
            registrations: vec![Registration {
                country: "US".into(),
                region: Some("NY".into()),
            }],
            prices_include_tax: false,
            tax_ids: vec![],
            verify_vat_ids_online: false,
        };
        let rates = rates();
        let resolve = |c: &Customer<'_>| resolve(Some(&seller), &rates, c, at(DAY));
        let ca = Customer {
            region: Some("CA"),
            postal_code: Some("94105"),
            ..customer("US")
        };
        assert_eq!(percents(&resolve(&ca).unwrap()), ["7.25"]);
        // A postal-code prefix adds its district rate.
        let la = Customer {
            postal_code: Some("90012"),
            ..ca
        };
        assert_eq!(percents(&resolve(&la).unwrap()), ["7.25", "2.25"]);
        let or = Customer {
            region: Some("OR"),
            ..customer("US")
        };
        assert_eq!(resolve(&or).unwrap().reason, TaxReason::NotRegistered);
        // Registered in New York without a rate: refused, not drafted untaxed.
        let ny = Customer {
            region: Some("NY"),
            ..customer("US")
        };
        assert!(
            matches!(resolve(&ny), Err(TaxError::NoRate { jurisdiction, .. }) if jurisdiction == "US-NY")
        );
        let exempt = Customer {
            exempt: TaxExempt::Exempt,
            ..ca
        };
        let exempt = resolve(&exempt).unwrap();
        assert_eq!(exempt.reason, TaxReason::CustomerExempt);
        assert!(exempt.rates.is_empty() && exempt.reason.note().is_some());
        let reverse = Customer {
            exempt: TaxExempt::Reverse,
            ..ca
        };
        assert_eq!(
            resolve(&reverse).unwrap().reason,
            TaxReason::CustomerReverseCharge
        );
        let nowhere = Customer {
            country: None,
            ..ca
        };
        let fallback = resolve(&nowhere).unwrap();
        assert_eq!(
            (fallback.reason, percents(&fallback)),
            (TaxReason::AddressMissing, vec!["7.25".into()])
        );
        // No settings: no tax, as before tax existed.
        assert_eq!(
            super::resolve(None, &rates, &ca, at(DAY)).unwrap().reason,
            TaxReason::NotConfigured
        );
    }

    #[test]
    fn the_rate_effective_on_the_invoice_date_applies() {
        let seller = german_seller();
        let old = vat(1, "DE", "19");
        let (new, ended) = old
            .change(
                TaxRateId::from_ulid(ulid::Ulid::from_parts(9, 9)),
                crate::tax::rates::TaxRateChange {
                    percentage: Decimal::from(16),
                    display_name: None,
                    effective_from: at("2020-07-01T00:00:00Z"),
                },
                at(DAY),
            )
            .unwrap();
        let rates = [ended, new];
        let on = |day: &str| {
            percents(&resolve(Some(&seller), &rates, &customer("DE"), at(day)).unwrap())
        };
        assert_eq!(on("2020-06-30T23:59:59Z"), ["19"]);
        assert_eq!(on("2020-07-01T00:00:00Z"), ["16"]);
    }

    fn invoice(amounts: &[i64], tax: &InvoiceTax) -> invoice_draft::InvoiceDraft {
        invoice_of_prices(&amounts.iter().map(|&a| (a, None)).collect::<Vec<_>>(), tax)
    }

    /// An invoice of one line per price: its amount and its `tax_behavior`.
    fn invoice_of_prices(
        prices: &[(i64, Option<TaxBehavior>)],
        tax: &InvoiceTax,
    ) -> invoice_draft::InvoiceDraft {
        let mut lines: Vec<LineInput> = prices
            .iter()
            .map(|&(amount, tax_behavior)| LineInput {
                id: None,
                description: "fee".into(),
                period: None,
                source: LineSource::Fixed {
                    amount,
                    quantity: None,
                },
                tax_rates: Vec::new(),
                tax_behavior,
                discountable: true,
            })
            .collect();
        tax.apply(&mut lines);
        build_invoice(&InvoiceInput {
            currency: Currency::from_code("eur").unwrap(),
            lines,
            discounts: Vec::new(),
            credits: Vec::new(),
            minimum_commitment: None,
        })
        .unwrap()
    }

    #[test]
    fn inclusive_119_is_100_net_and_19_tax() {
        let seller = TaxSettings {
            prices_include_tax: true,
            ..german_seller()
        };
        let tax = resolve(Some(&seller), &rates(), &customer("DE"), at(DAY)).unwrap();
        let inv = invoice(&[11_900], &tax);
        assert_eq!(
            (inv.total, inv.total_excluding_tax, inv.tax_total),
            (11_900, 10_000, 1_900)
        );
        assert_eq!(inv.taxes[0].jurisdiction.as_deref(), Some("DE"));
    }

    #[test]
    fn a_price_overrides_the_tenant_default_either_way() {
        let exclusive_seller = german_seller();
        let inclusive_seller = TaxSettings {
            prices_include_tax: true,
            ..german_seller()
        };
        let on = |seller: &TaxSettings| {
            let tax = resolve(Some(seller), &rates(), &customer("DE"), at(DAY)).unwrap();
            let inv = invoice_of_prices(
                &[
                    (11_900, Some(TaxBehavior::Inclusive)),
                    (10_000, Some(TaxBehavior::Exclusive)),
                    (10_000, None),
                ],
                &tax,
            );
            inv.lines
                .iter()
                .map(|l| (l.total_excluding_tax, l.tax_amount, l.total))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            on(&exclusive_seller),
            [
                (10_000, 1_900, 11_900),
                (10_000, 1_900, 11_900),
                (10_000, 1_900, 11_900)
            ]
        );
        assert_eq!(
            on(&inclusive_seller),
            [
                (10_000, 1_900, 11_900),
                (10_000, 1_900, 11_900),
                (8_403, 1_597, 10_000)
            ]
        );
    }

    proptest! {
        /// Resolved rates on any invoice: each line's tax is its net times its rate,
        /// rounded once (half away from zero), inclusive or exclusive as its price says or
        /// else as the tenant does; the invoice's tax is the sum of its lines'; and
        /// inclusive prices never change the gross.
        #[test]
        fn resolved_tax_rounds_per_line_and_sums(
            prices in proptest::collection::vec(
                (0i64..10_000_000, prop::option::of(prop::sample::select(vec![TaxBehavior::Inclusive, TaxBehavior::Exclusive]))),
                1..8,
            ),
            percent in 0u32..=2_500u32,
            tenant_inclusive in any::<bool>(),
            customer_country in prop::sample::select(vec!["DE", "FR", "US"]),
        ) {
            let percent = Decimal::new(i64::from(percent), 2);
            let seller = TaxSettings { prices_include_tax: tenant_inclusive, ..german_seller() };
            let rates = [vat(1, "DE", &percent.to_string()), vat(2, "FR", &percent.to_string())];
            let tax = resolve(Some(&seller), &rates, &customer(customer_country), at(DAY)).unwrap();
            let inv = invoice_of_prices(&prices, &tax);
            let mut sum = 0;
            let mut gross = 0;
            for (line, &(amount, behavior)) in inv.lines.iter().zip(&prices) {
                let inclusive = behavior.map_or(tenant_inclusive, TaxBehavior::inclusive);
                let exact = if tax.rates.is_empty() {
                    Decimal::ZERO
                } else if inclusive {
                    Decimal::from(amount) * percent / (Decimal::ONE_HUNDRED + percent)
                } else {
                    Decimal::from(amount) * percent / Decimal::ONE_HUNDRED
                };
                let once = exact.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
                prop_assert_eq!(Decimal::from(line.tax_amount), once);
                // An inclusive price is the line's gross; an exclusive one its net.
                prop_assert_eq!(if inclusive { line.total } else { line.total_excluding_tax }, amount);
                sum += line.tax_amount;
                gross += line.total;
            }
            prop_assert_eq!(inv.tax_total, sum);
            prop_assert_eq!(inv.taxes.iter().map(|t| t.amount).sum::<i64>(), sum);
            prop_assert_eq!(inv.total, gross);
            prop_assert_eq!(inv.total_excluding_tax + inv.tax_total, gross);
        }
    }
}
