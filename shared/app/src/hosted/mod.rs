//! Hosted invoice pages: the links a customer opens an invoice with (minted, revoked), the
//! page's view of the invoice, and paying it from the page through collection's one
//! exactly-once payment path (the payment worker's).
//!
//! A token is 32 bytes of OS randomness; only its SHA-256 is stored
//! ([`billing_domain::hosted::link`]). Requests for tokens that open nothing are counted per
//! source in the shared rate counts (the API keys' machinery, under a tenant of its own),
//! so guessing is refused long before it could succeed.

use std::sync::Arc;

use base64::Engine;
use billing_domain::billing::invoice::{Invoice, InvoiceStatus};
use billing_domain::collection::payment::Payment;
use billing_domain::customers::access::Permission;
use billing_domain::customers::account::Address;
use billing_domain::documents::branding::Branding;
use billing_domain::events::record::AuditAction;
use billing_domain::hosted::link::{self, HostedLink};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{InvoiceId, PaymentId, TenantId};
use jiff::{SignedDuration, Timestamp};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::collection::{CardForm, CollectionService};
use crate::customers::CustomersService;
use crate::documents::{DocumentsService, Download};
use crate::kernel::{change, system_caller, AppError, Caller, ChangeSpec, Clocks};
use crate::ports::{AccountStore, HostedLinkStore, InvoiceStore, RateLimitStore, TenantStore};

/// The window token guesses are counted in, per source.
pub const GUESS_WINDOW: SignedDuration = SignedDuration::from_hours(1);
/// Requests for unknown or revoked tokens a source may make per window; then every hosted
/// page request from it is refused until the window ends.
pub const GUESSES_PER_WINDOW: u32 = 30;

/// The tenant the guess counts are kept under: no tenant owns a wrong token.
fn guess_counts() -> TenantId {
    TenantId::from_ulid(ulid::Ulid::nil())
}

/// What the hosted pages read and write.
pub trait HostedPorts:
    HostedLinkStore + InvoiceStore + TenantStore + AccountStore + RateLimitStore
{
}

impl<T> HostedPorts for T where
    T: HostedLinkStore + InvoiceStore + TenantStore + AccountStore + RateLimitStore
{
}

/// A link as just minted: the only time its token exists outside the customer's hands.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    pub token: String,
    pub invoice_id: InvoiceId,
    pub created_at: Timestamp,
}

/// Who issued the invoice.
#[derive(Debug, Clone)]
pub struct Seller {
    pub name: String,
    pub tax_ids: Vec<String>,
}

/// Who the invoice is for, as it was issued.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub name: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
    pub tax_ids: Vec<String>,
}

/// What the page offers the customer.
#[derive(Debug, Clone)]
pub enum PayState {
    /// Paid, void, uncollectible, or nothing left to pay.
    Closed,
    /// A card form: the sandbox's, or Stripe.js's.
    Card(CardForm),
    /// An attempt waits for the customer to authenticate (3-D Secure).
    Action {
        payment: PaymentId,
        /// Stripe.js's client secret; `None` with the sandbox, whose challenge is a form.
        client_secret: Option<String>,
        publishable_key: Option<String>,
    },
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct HostedInvoice {
    pub invoice: Invoice,
    /// The seller's branding: colours, address, support email, footer.
    pub branding: Branding,
    pub seller: Seller,
    pub buyer: Buyer,
    pub pay: PayState,
    /// The last attempt's failure, in the gateway's words, to show above the form.
    pub last_failure: Option<String>,
}

/// The invoice a token opens, and the caller acting for its page.
struct Opened {
    invoice: Invoice,
    caller: Caller,
}

/// Mints a link to `invoice`'s page at `now`: for the tenant's API call, and for the
/// emails that carry one (collection calls it over its own store).
pub(crate) async fn mint_link(
    store: &dyn HostedLinkStore,
    tenant: TenantId,
    invoice: &Invoice,
    now: Timestamp,
) -> Result<IssuedLink, AppError> {
    let epoch = store.hosted_link_epoch(tenant, invoice.id).await?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    store
        .insert_hosted_link(&HostedLink {
            token_hash: link::hash_token(&token),
            tenant_id: tenant,
            invoice_id: invoice.id,
            epoch,
            created_at: now,
        })
        .await?;
    Ok(IssuedLink {
        token,
        invoice_id: invoice.id,
        created_at: now,
    })
}

#[derive(Clone)]
pub struct HostedService {
    store: Arc<dyn HostedPorts>,
    clocks: Clocks,
    collection: CollectionService,
    customers: CustomersService,
    documents: DocumentsService,
}

impl HostedService {
    pub(crate) fn new(
        store: Arc<dyn HostedPorts>,
        clocks: Clocks,
        collection: CollectionService,
        customers: CustomersService,
        documents: DocumentsService,
    ) -> Self {
        Self {
            store,
            clocks,
            collection,
            customers,
            documents,
        }
    }

    /// Mints a link to a finalized invoice's page (`POST /v1/invoices/{id}/hosted-link`);
    /// with `rotate`, every earlier link is revoked first.
    pub async fn issue_link(
        &self,
        caller: &Caller,
        id: InvoiceId,
        rotate: bool,
    ) -> Result<IssuedLink, AppError> {
        caller.require(Permission::WriteBilling)?;
        let invoice = self.finalized(caller, id).await?;
        if rotate {
            self.revoke(caller, &invoice).await?;
        }
        self.mint(caller.tenant_id, &invoice).await
    }

    async fn mint(&self, tenant: TenantId, invoice: &Invoice) -> Result<IssuedLink, AppError> {
        mint_link(&*self.store, tenant, invoice, self.clocks.now()).await
    }

    /// Revokes every link to the invoice's page (`DELETE /v1/invoices/{id}/hosted-link`).
    pub async fn revoke_links(&self, caller: &Caller, id: InvoiceId) -> Result<(), AppError> {
        caller.require(Permission::WriteBilling)?;
        let invoice = self.finalized(caller, id).await?;
        self.revoke(caller, &invoice).await
    }

    async fn revoke(&self, caller: &Caller, invoice: &Invoice) -> Result<(), AppError> {
        for _ in 0..crate::kernel::WRITE_ATTEMPTS {
            let current = self
                .store
                .hosted_link_epoch(caller.tenant_id, invoice.id)
                .await?;
            let after = serde_json::json!({ "hosted_link_epoch": current + 1 });
            let change = change(
                caller,
                self.clocks.now(),
                ChangeSpec {
                    entity_type: "invoice",
                    entity_id: invoice.id.to_string(),
                    action: AuditAction::Revoke,
                    event_type: None,
                    before: Some(&serde_json::json!({ "hosted_link_epoch": current })),
                    after: &after,
                },
            );
            match self
                .store
                .revoke_hosted_links(caller.tenant_id, invoice.id, current, &change)
                .await
            {
                Err(crate::ports::StoreError::VersionConflict { .. }) => continue,
                other => return Ok(other?),
            }
        }
        Err(AppError::Unavailable(
            "the invoice's links kept changing; retry".into(),
        ))
    }

    async fn finalized(&self, caller: &Caller, id: InvoiceId) -> Result<Invoice, AppError> {
        let invoice = self
            .store
            .get_invoice(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", id))?;
        if invoice.status == InvoiceStatus::Draft {
            return Err(AppError::Conflict {
                code: ErrorCode::InvoiceNotFinalized,
                message: "a draft invoice has no page; finalize it first".into(),
                param: None,
            });
        }
        Ok(invoice)
    }

    /// Whether a source has spent its guesses this window, checked before any lookup:
    /// `Some(seconds)` until it may try again.
    pub async fn refused_source(&self, source: &str) -> Result<Option<u64>, AppError> {
        let claim = self.count_guess(source, 0).await?;
        Ok((claim.used >= GUESSES_PER_WINDOW).then(|| self.window_left()))
    }

    /// Counts a request for something that is not a token at all against `source`.
    pub async fn record_miss(&self, source: &str) -> Result<(), AppError> {
        self.count_guess(source, 1).await.map(|_| ())
    }

    async fn count_guess(
        &self,
        source: &str,
        want: u32,
    ) -> Result<crate::ports::RateClaim, AppError> {
        let now = self.clocks.now();
        let window = GUESS_WINDOW.as_secs();
        let start = Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(window))
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let end = start + GUESS_WINDOW;
        // The source's address is kept only as a hash, in the count's key.
        let subject = format!(
            "hosted:{}",
            hex::encode(&Sha256::digest(source.as_bytes())[..16])
        );
        Ok(self
            .store
            .claim_rate(
                guess_counts(),
                &subject,
                (start, end),
                want,
                GUESSES_PER_WINDOW,
            )
            .await?)
    }

    fn window_left(&self) -> u64 {
        let now = self.clocks.now().as_second();
        let window = GUESS_WINDOW.as_secs();
        u64::try_from(window - now.rem_euclid(window)).unwrap_or(1)
    }

    /// The invoice `token` opens, or not found (counted against `source`).
    async fn open(&self, token: &str, source: &str) -> Result<Opened, AppError> {
        match self.resolve(token).await? {
            Some(opened) => Ok(opened),
            None => {
                self.count_guess(source, 1).await?;
                Err(AppError::not_found("page", "this link"))
            }
        }
    }

    async fn resolve(&self, token: &str) -> Result<Option<Opened>, AppError> {
        if !link::looks_like_token(token) {
            return Ok(None);
        }
        let Some(found) = self.store.get_hosted_link(&link::hash_token(token)).await? else {
            return Ok(None);
        };
        let epoch = self
            .store
            .hosted_link_epoch(found.tenant_id, found.invoice_id)
            .await?;
        if !found.is_live(epoch) {
            return Ok(None);
        }
        let Some(invoice) = self
            .store
            .get_invoice(found.tenant_id, found.invoice_id)
            .await?
        else {
            return Ok(None);
        };
        let livemode = self
            .store
            .get_tenant(found.tenant_id)
            .await?
            .is_some_and(|t| t.mode.is_live());
        Ok(Some(Opened {
            invoice,
            caller: system_caller(found.tenant_id, livemode),
        }))
    }

    /// The page of `token` (`GET /i/{token}`), as a request from `source` sees it.
    pub async fn page(&self, token: &str, source: &str) -> Result<HostedInvoice, AppError> {
        let Opened { invoice, caller } = self.open(token, source).await?;
        let tenant = self.store.get_tenant(caller.tenant_id).await?;
        let account = self
            .store
            .get_account(caller.tenant_id, invoice.account_id)
            .await?;
        let details = invoice.billing_details.clone().unwrap_or_default();
        let buyer = Buyer {
            name: details
                .name
                .or_else(|| account.as_ref().and_then(|a| a.name.clone())),
            email: account
                .as_ref()
                .filter(|a| a.purged_at.is_none())
                .map(|a| a.email.clone()),
            address: details.address,
            tax_ids: invoice.buyer_tax_ids.clone(),
        };
        let branding = self.documents.tenant_branding(caller.tenant_id).await?;
        let seller = Seller {
            name: branding
                .legal_name
                .clone()
                .or_else(|| tenant.map(|t| t.name))
                .unwrap_or_default(),
            tax_ids: if invoice.seller_tax_ids.is_empty() {
                branding.tax_ids.clone()
            } else {
                invoice.seller_tax_ids.clone()
            },
        };
        let pay = if !invoice.is_payable() {
            PayState::Closed
        } else {
            let form = self.collection.card_form(&caller).await?;
            match self.collection.awaiting_action(&caller, &invoice).await? {
                Some((payment, client_secret)) => PayState::Action {
                    payment: payment.id,
                    client_secret,
                    publishable_key: match form {
                        CardForm::Stripe { publishable_key } => Some(publishable_key),
                        _ => None,
                    },
                },
                None => PayState::Card(form),
            }
        };
        let last_failure = self
            .collection
            .last_failure(&caller, &invoice)
            .await?
            .filter(|_| invoice.is_payable());
        Ok(HostedInvoice {
            invoice,
            branding,
            seller,
            buyer,
            pay,
            last_failure,
        })
    }

    /// Pays the page's invoice with `card` (a sandbox test card, or the `pm_…` Stripe.js
    /// made) through collection's exactly-once path. The attempt's id derives from the
    /// invoice as the page showed it (`shown_version`), so the same form sent twice, or
    /// twice at once, charges once. An invoice paid meanwhile is left as it is: the page
    /// shows it paid.
    pub async fn pay(
        &self,
        token: &str,
        source: &str,
        shown_version: u64,
        card: &str,
    ) -> Result<Option<Payment>, AppError> {
        let Opened { invoice, caller } = self.open(token, source).await?;
        if !invoice.is_payable() {
            return Ok(None);
        }
        let id = link::page_payment_id(invoice.id, shown_version);
        let (method, _) = self
            .customers
            .add_payment_method(&caller, invoice.account_id, card, false)
            .await?;
        let payment = self
            .collection
            .charge_now(&caller, &invoice, id, Some(method.id))
            .await;
        match payment {
            Err(AppError::Conflict {
                code: ErrorCode::InvoiceNotPayable,
                ..
            }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Records the authentication the customer just completed (the sandbox's challenge,
    /// or Stripe.js's) for the page's invoice.
    pub async fn complete_action(
        &self,
        token: &str,
        source: &str,
    ) -> Result<Option<Payment>, AppError> {
        let Opened { invoice, caller } = self.open(token, source).await?;
        if !invoice.is_payable() {
            return Ok(None);
        }
        // A second send of the form (or Stripe's webhook) may have recorded it already:
        // the page then shows what it came to.
        match self.collection.complete_action(&caller, &invoice).await {
            Err(AppError::Conflict {
                code: ErrorCode::NoActionRequired,
                ..
            }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// The PDF of the page's invoice (`GET /i/{token}/pdf`), under the same token checks
    /// and guess counting as the page.
    pub async fn pdf(&self, token: &str, source: &str) -> Result<Download, AppError> {
        let Opened { invoice, caller } = self.open(token, source).await?;
        self.documents
            .invoice_download(caller.tenant_id, &invoice)
            .await
    }

    /// The seller's logo for the page (`GET /i/{token}/logo`): its bytes and content type,
    /// under the same token checks and guess counting as the page.
    pub async fn logo(
        &self,
        token: &str,
        source: &str,
    ) -> Result<Option<(Vec<u8>, String)>, AppError> {
        let Opened { caller, .. } = self.open(token, source).await?;
        self.documents.logo_file(caller.tenant_id).await
    }
}
