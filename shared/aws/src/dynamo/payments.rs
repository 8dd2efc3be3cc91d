//! Payment profiles (gateway customer and cards), payments, credit notes, payment settings,
//! gateway refs and applied gateway events.
//!
//! A pending payment carries a due-index entry at its `due_at` (under its test clock when it
//! has one); recording its result rewrites the item without it.

use billing_domain::kernel::time::later;
use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_app::ports::*;
use billing_domain::collection::credit_note::CreditNote;
use billing_domain::collection::payment::{Payment, PaymentStatus};
use billing_domain::collection::retry::PaymentSettings;
use billing_domain::customers::payment_method::PaymentProfile;
use billing_domain::kernel::ids::{AccountId, CreditNoteId, PaymentId, TenantId};
use jiff::Timestamp;

use super::billing::{invoice_item, subscription_item};
use super::{epoch_seconds, to_item, DynamoStore, Item, ShardRange, Transaction};
use crate::keys::{self, TTL};

/// How long an applied gateway event is remembered: longer than Stripe retries (3 days).
const GATEWAY_EVENT_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);

pub(super) fn payment_item(tenant: TenantId, payment: &Payment) -> Result<Item, StoreError> {
    let key = keys::payment(tenant, payment.id, payment.account_id);
    let mut item = to_item("payment", payment, &key)?;
    if payment.status == PaymentStatus::Pending {
        item.extend(match payment.test_clock {
            Some(clock) => keys::due_on_clock(clock, &key, payment.due_at),
            None => keys::due(&key, payment.due_at),
        });
    }
    Ok(item)
}

impl Transaction<'_> {
    /// Creates a payment (`expected` is `None`) or replaces it over its stored version.
    pub(super) fn payment(
        &mut self,
        tenant: TenantId,
        expected: Option<u64>,
        payment: &Payment,
    ) -> Result<&mut Self, StoreError> {
        let item = payment_item(tenant, payment)?;
        match expected {
            None => self.create(item, StoreError::AlreadyExists { entity: "payment" }),
            Some(version) => self.replace_version(item, version, "payment"),
        }
    }

    fn gateway_ref(
        &mut self,
        gateway_id: &str,
        reference: &GatewayRef,
    ) -> Result<&mut Self, StoreError> {
        let mut values = HashMap::from([
            (
                ":tenant".to_owned(),
                AttributeValue::S(reference.tenant_id.to_string()),
            ),
            (
                ":account".to_owned(),
                AttributeValue::S(reference.account_id.to_string()),
            ),
        ]);
        let expression = match reference.payment_id {
            Some(payment) => {
                values.insert(
                    ":payment".to_owned(),
                    AttributeValue::S(payment.to_string()),
                );
                "SET tenant_id = :tenant, account_id = :account, payment_id = :payment"
            }
            None => "SET tenant_id = :tenant, account_id = :account",
        };
        self.update(
            &keys::gateway_ref(gateway_id),
            expression,
            None,
            values,
            StoreError::Internal("an unconditional update failed its condition".into()),
        )
    }

    fn gateway_event(
        &mut self,
        tenant: TenantId,
        event_id: &str,
        now: Timestamp,
    ) -> Result<&mut Self, StoreError> {
        let mut item = keys::gateway_event(tenant, event_id).all();
        item.insert(
            TTL.to_owned(),
            epoch_seconds(later(now, GATEWAY_EVENT_RETENTION)),
        );
        item.insert(
            super::ENTITY_ATTRIBUTE.to_owned(),
            AttributeValue::S("gateway_event".into()),
        );
        self.create(
            item,
            StoreError::AlreadyExists {
                entity: "gateway event",
            },
        )
    }
}

#[async_trait]
impl PaymentStore for DynamoStore {
    async fn get_payment_profile(
        &self,
        tenant: TenantId,
        account: AccountId,
    ) -> Result<Option<PaymentProfile>, StoreError> {
        self.get(&keys::payment_profile(tenant, account)).await
    }

    async fn save_payment_profile(
        &self,
        tenant: TenantId,
        next: &PaymentProfile,
        refs: &[(String, GatewayRef)],
        change: Option<&Change>,
    ) -> Result<(), StoreError> {
        let item = to_item(
            "payment_profile",
            next,
            &keys::payment_profile(tenant, next.account_id),
        )?;
        let mut tx = self.transaction();
        if next.version <= 1 {
            tx.create(
                item,
                StoreError::VersionConflict {
                    entity: "payment profile",
                },
            )?;
        } else {
            tx.replace_version(item, next.version - 1, "payment profile")?;
        }
        for (id, reference) in refs {
            tx.gateway_ref(id, reference)?;
        }
        if let Some(change) = change {
            tx.record(tenant, change)?;
        }
        tx.commit().await
    }

    async fn get_payment(
        &self,
        tenant: TenantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        let key = keys::payment_primary(tenant, id);
        self.get(&key).await
    }

    async fn list_payments(
        &self,
        tenant: TenantId,
        filter: &PaymentFilter,
        page: &PageRequest,
    ) -> Result<Page<Payment>, StoreError> {
        let cursor = page
            .starting_after
            .as_deref()
            .and_then(|id| PaymentId::parse(id, "starting_after").ok());
        let admit = |p: &Payment| filter.admits(p);
        let id_of = |p: &Payment| p.id.to_string();
        match filter.account {
            Some(account) => {
                let start = cursor.map(|id| keys::payment(tenant, id, account).all());
                let query = self
                    .query_gsi1(keys::account_payments_index(tenant, account))
                    .scan_index_forward(false);
                self.scan_page(query, start, page, admit, id_of).await
            }
            None => {
                let after = cursor.map(|id| keys::payment_primary(tenant, id).sk);
                self.scan_shards(
                    ShardRange::newest_first(tenant, keys::PAYMENT_PREFIX, after.as_deref()),
                    page,
                    admit,
                    id_of,
                )
                .await
            }
        }
    }

    async fn save_collection(
        &self,
        tenant: TenantId,
        write: &CollectionWrite,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        for (expected, payment) in &write.payments {
            tx.payment(tenant, *expected, payment)?;
        }
        if let Some((version, invoice)) = &write.invoice {
            tx.replace_invoice(invoice_item(tenant, invoice)?, *version)?;
        }
        if let Some((version, sub)) = &write.subscription {
            tx.replace_version(subscription_item(tenant, sub)?, *version, "subscription")?;
        }
        if let Some(note) = &write.credit_note {
            tx.create(
                to_item(
                    "credit_note",
                    note,
                    &keys::credit_note(tenant, note.id, note.account_id),
                )?,
                StoreError::AlreadyExists {
                    entity: "credit note",
                },
            )?;
        }
        for (id, reference) in &write.gateway_refs {
            tx.gateway_ref(id, reference)?;
        }
        if let Some(event) = &write.gateway_event {
            tx.gateway_event(tenant, event, change.audit.at)?;
        }
        if let Some(settlement) = &write.balance {
            tx.balance(tenant, &settlement.change)?
                .record(tenant, &settlement.record)?;
        }
        tx.wallets(tenant, write.wallets.as_deref())?;
        tx.record(tenant, change)?;
        tx.commit().await
    }

    async fn get_credit_note(
        &self,
        tenant: TenantId,
        id: CreditNoteId,
    ) -> Result<Option<CreditNote>, StoreError> {
        let key = keys::credit_note(tenant, id, AccountId::from_ulid(ulid::Ulid::nil()));
        self.get(&key).await
    }

    async fn list_credit_notes(
        &self,
        tenant: TenantId,
        filter: &CreditNoteFilter,
        page: &PageRequest,
    ) -> Result<Page<CreditNote>, StoreError> {
        let cursor = page
            .starting_after
            .as_deref()
            .and_then(|id| CreditNoteId::parse(id, "starting_after").ok());
        let admit = |c: &CreditNote| filter.admits(c);
        let id_of = |c: &CreditNote| c.id.to_string();
        match filter.account {
            Some(account) => {
                let start = cursor.map(|id| keys::credit_note(tenant, id, account).all());
                let query = self
                    .query_gsi1(keys::account_credit_notes_index(tenant, account))
                    .scan_index_forward(false);
                self.scan_page(query, start, page, admit, id_of).await
            }
            None => {
                let start = cursor.map(|id| {
                    keys::credit_note(tenant, id, AccountId::from_ulid(ulid::Ulid::nil())).primary()
                });
                let query = self
                    .query_partition(keys::tenant_partition(tenant), keys::CREDIT_NOTE_PREFIX)
                    .scan_index_forward(false);
                self.scan_page(query, start, page, admit, id_of).await
            }
        }
    }

    async fn payment_settings(&self, tenant: TenantId) -> Result<PaymentSettings, StoreError> {
        Ok(self
            .get(&keys::payment_settings(tenant))
            .await?
            .unwrap_or_default())
    }

    async fn set_payment_settings(
        &self,
        tenant: TenantId,
        settings: &PaymentSettings,
        change: &Change,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.put(
            to_item(
                "payment_settings",
                settings,
                &keys::payment_settings(tenant),
            )?,
            // Settings are replaced whole, whoever wrote them last.
            "attribute_not_exists(pk) OR attribute_exists(pk)",
            None,
            StoreError::Internal("an unconditional put failed its condition".into()),
        )?
        .record(tenant, change)?;
        tx.commit().await
    }

    async fn resolve_gateway_ref(
        &self,
        gateway_id: &str,
    ) -> Result<Option<GatewayRef>, StoreError> {
        self.get(&keys::gateway_ref(gateway_id)).await
    }

    async fn record_gateway_event(
        &self,
        tenant: TenantId,
        event_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.transaction();
        tx.gateway_event(tenant, event_id, Timestamp::now())?;
        tx.commit().await
    }
}
