//! Property tests of account balances: any sequence of grants, adjustments, invoices
//! settled against the balance, voids and expiries keeps the ledger and the grants in
//! agreement, never goes below zero, and never credits an invoice more than it owes.

use std::collections::BTreeMap;

use billing_domain::billing::invoice::{DraftFacts, Invoice, InvoiceStatus};
use billing_domain::billing::invoice_draft::InvoiceDraft;
use billing_domain::billing::subscription::{BillingReason, CollectionMethod};
use billing_domain::credits::balance::{
    BalanceChange, CreditGrant, CreditSource, Ledger, NewGrant, TransactionKind,
};
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::ids::{AccountId, CreditGrantId, InvoiceId};
use billing_domain::kernel::money::MinorUnits;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use ulid::Ulid;

#[derive(Debug, Clone)]
enum Op {
    Grant {
        amount: i64,
        expires_in: Option<i64>,
    },
    Debit(i64),
    /// An invoice with this total (negative: a credit larger than its charges) and this
    /// discount, settled against the balance; voided afterwards when `void` says so, with
    /// that much of what was paid kept as balance (`credit_to_balance`).
    Invoice {
        total: i64,
        discount: i64,
        void: Option<i64>,
    },
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..5_000, prop::option::of(1i64..100))
            .prop_map(|(amount, expires_in)| Op::Grant { amount, expires_in }),
        (1i64..3_000).prop_map(Op::Debit),
        (-3_000i64..8_000, 0i64..1_000, prop::option::of(0i64..2_000)).prop_map(
            |(total, discount, void)| {
                Op::Invoice {
                    total,
                    discount,
                    void,
                }
            }
        ),
        (1i64..60).prop_map(Op::Wait),
    ]
}

fn invoice(n: u128, total: i64, discount: i64) -> Invoice {
    Invoice::draft(
        DraftFacts {
            id: InvoiceId::from_ulid(Ulid::from_parts(9, n)),
            account_id: AccountId::from_ulid(Ulid::from_parts(1, 1)),
            subscription_id: None,
            test_clock: None,
            billing_reason: BillingReason::Manual,
            period: None,
            collection_method: CollectionMethod::ChargeAutomatically,
        },
        InvoiceDraft {
            currency: Currency::from_code("usd").unwrap(),
            lines: Vec::new(),
            subtotal: total + discount,
            discount_total: discount,
            total_excluding_tax: total,
            tax_total: 0,
            total,
            discounts: Vec::new(),
            taxes: Vec::new(),
            credits_applied: Vec::new(),
            credit_total: 0,
            wallet_total: 0,
            wallets_applied: Vec::new(),
            amount_due: total.max(0),
            ending_credit_balance: (-total).max(0),
        },
        Timestamp::from_second(1_800_000_000).unwrap(),
    )
}

/// The store's view: every grant ever written, the balance, the ledger.
struct Stored {
    ledger: Ledger,
    all: BTreeMap<CreditGrantId, CreditGrant>,
    entries_sum: i64,
}

impl Stored {
    fn commit(&mut self, change: BalanceChange) {
        assert_eq!(change.previous_version, self.ledger.balance.version);
        assert_eq!(change.balance.version, change.previous_version + 1);
        let mut running = self.ledger.balance.available.get();
        for entry in &change.entries {
            running += entry.amount.get();
            assert_eq!(
                entry.ending_balance.get(),
                running,
                "each entry ends where the next starts"
            );
            self.entries_sum += entry.amount.get();
        }
        for grant in change.grants {
            self.all.insert(grant.id, grant);
        }
        self.ledger = Ledger {
            balance: change.balance.clone(),
            grants: change
                .balance
                .open_grants
                .iter()
                .map(|id| self.all[id].clone())
                .collect(),
        };
    }

    fn with(&self, ids: &[CreditGrantId]) -> Ledger {
        let mut ledger = self.ledger.clone();
        for id in ids {
            if !ledger.grants.iter().any(|g| g.id == *id) {
                ledger.grants.push(self.all[id].clone());
            }
        }
        ledger
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_ledger_the_grants_and_the_balance_always_agree(ops in prop::collection::vec(op(), 1..40)) {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let mut now = start;
        let mut n = 0u128;
        let mut ids = || Ulid::new();
        let mut s = Stored {
            ledger: Ledger::empty(
                AccountId::from_ulid(Ulid::from_parts(1, 1)),
                Currency::from_code("usd").unwrap(),
                None,
                now,
            ),
            all: BTreeMap::new(),
            entries_sum: 0,
        };
        for op in ops {
            n += 1;
            match op {
                Op::Grant { amount, expires_in } => {
                    let change = s.ledger.grant(
                        NewGrant {
                            id: CreditGrantId::from_ulid(Ulid::from_parts(3, n)),
                            source: CreditSource::Grant,
                            amount,
                            reason: "p".into(),
                            note: None,
                            invoice_id: None,
                            expires_at: expires_in.map(|m| now + SignedDuration::from_mins(m)),
                        },
                        now,
                        &mut ids,
                    ).unwrap();
                    s.commit(change);
                }
                Op::Debit(amount) => {
                    let spendable = s.ledger.spendable(now).get();
                    match s.ledger.debit(amount, "p".into(), now, &mut ids) {
                        Ok(change) => {
                            prop_assert!(amount <= spendable);
                            s.commit(change);
                        }
                        Err(_) => prop_assert!(amount > spendable),
                    }
                }
                Op::Invoice { total, discount, void } => {
                    let draft = invoice(n, total, discount);
                    let spendable = s.ledger.spendable(now).get();
                    if let Some((settled, change)) = s.ledger.settle_invoice(&draft, now, &mut ids) {
                        s.commit(change);
                        let applied: i64 = settled.credits_applied.iter().map(|c| c.amount.get()).sum();
                        // Credits applied never exceed what was due, nor what was spendable.
                        prop_assert!(applied <= draft.amount_due.get());
                        prop_assert!(applied <= spendable);
                        prop_assert_eq!(applied, settled.credit_total.get());
                        // discount + credit + amount due = what the lines came to, and credit +
                        // amount due = total, once the negative part of a total (moved to the
                        // balance) is counted back.
                        let (d, c, due, moved) = (
                            settled.discount_total.get(),
                            settled.credit_total.get(),
                            settled.amount_due.get(),
                            settled.credited_to_balance.get(),
                        );
                        prop_assert_eq!(d + c + due - moved, settled.subtotal.get());
                        prop_assert_eq!(c + due - moved, settled.total.get());
                        prop_assert_eq!(settled.credited_to_balance.get(), (-total).max(0));
                        // Settled once: a second look finds nothing more to do unless
                        // credit and something due are both left.
                        if let Some((again, _)) = s.ledger.settle_invoice(&settled, now, &mut ids) {
                            prop_assert!(again.credited_to_balance == settled.credited_to_balance);
                            prop_assert!(settled.amount_due.is_positive());
                        }
                        if let Some(kept) = void {
                            let spent: Vec<CreditGrantId> = settled.credits_applied.iter().map(|c| c.grant_id).collect();
                            let mut voided = settled.clone();
                            voided.status = InvoiceStatus::Void;
                            let before = s.ledger.balance.available.get();
                            match s.with(&spent).void_invoice(&voided, MinorUnits::new(kept), now, &mut ids) {
                                Some(change) => {
                                    // What the void gives: the credit spent back (less what
                                    // expired of it by now) and what was kept as balance.
                                    let expired: i64 = change.entries.iter()
                                        .filter(|e| e.kind == TransactionKind::Expired)
                                        .map(|e| e.amount.get())
                                        .sum();
                                    prop_assert_eq!(change.balance.available.get(), before + applied + kept + expired);
                                    s.commit(change);
                                }
                                None => prop_assert!(applied == 0 && kept == 0),
                            }
                        }
                    }
                }
                Op::Wait(minutes) => {
                    now += SignedDuration::from_mins(minutes);
                    if let Some(change) = s.ledger.expire(now, &mut ids) {
                        s.commit(change);
                    }
                }
            }
            let balance = s.ledger.balance.available.get();
            prop_assert!(balance >= 0, "never negative");
            prop_assert_eq!(balance, s.entries_sum, "balance = sum of the ledger");
            let remaining: i64 = s.all.values().map(|g| g.remaining.get()).sum();
            prop_assert_eq!(balance, remaining, "balance = what the grants hold");
        }
    }
}
