//! An account's payment methods: attach (creating the gateway customer on first need),
//! list, choose the default, detach. Only brand, last four digits, expiry and country are
//! kept.

use billing_domain::customers::access::Permission;
use billing_domain::customers::payment_method::{PaymentMethod, PaymentProfile};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::AccountId;

use super::CustomersService;
use crate::kernel::{
    change, gateway_unavailable, to_json, until_committed, AppError, Caller, ChangeSpec,
    WRITE_ATTEMPTS,
};
use crate::ports::*;

fn refused(err: GatewayError) -> AppError {
    match err {
        GatewayError::Rejected { code, message } => {
            AppError::Invalid(billing_domain::kernel::error::ValidationError::new(
                ErrorCode::PaymentMethodRefused,
                "payment_method",
                format!("the gateway refused it ({code}): {message}"),
            ))
        }
        other => gateway_unavailable(other),
    }
}

fn unknown_method(id: &str) -> AppError {
    AppError::not_found("payment method", id)
}

impl CustomersService {
    async fn payment_profile(
        &self,
        caller: &Caller,
        account: AccountId,
    ) -> Result<PaymentProfile, AppError> {
        Ok(self
            .store
            .get_payment_profile(caller.tenant_id, account)
            .await?
            .unwrap_or_else(|| PaymentProfile::new(account, self.gateways.name(caller.livemode))))
    }

    /// Attaches a card (a Stripe `pm_…` id or a sandbox test token) to the account; the
    /// gateway customer is created on first need, under a key derived from the account, so
    /// two racing first attaches make one customer.
    pub async fn add_payment_method(
        &self,
        caller: &Caller,
        account_id: AccountId,
        token: &str,
        make_default: bool,
    ) -> Result<(PaymentMethod, bool), AppError> {
        caller.require(Permission::WriteAccounts)?;
        let account = self
            .store
            .get_account(caller.tenant_id, account_id)
            .await?
            .filter(|a| a.deleted_at.is_none())
            .ok_or_else(|| AppError::not_found("account", account_id))?;
        let gateway = self
            .gateways
            .of_tenant(&*self.store, caller.tenant_id, caller.livemode)
            .await?
            .map_err(refused)?;
        let mut profile = self.payment_profile(caller, account_id).await?;
        let customer = match &profile.customer {
            Some(customer) => customer.clone(),
            None => {
                let customer = gateway
                    .create_customer(&NewGatewayCustomer {
                        idempotency_key: format!("{}:{}", caller.tenant_id, account.id),
                        account_id: account.id.to_string(),
                        name: account.name.clone().unwrap_or_default(),
                        email: account.email.clone(),
                    })
                    .await
                    .map_err(refused)?;
                profile = profile.with_customer(customer.clone());
                customer
            }
        };
        let card = gateway
            .attach_payment_method(&customer, token)
            .await
            .map_err(refused)?;
        let now = self
            .clocks
            .now_for(caller.tenant_id, account.test_clock)
            .await?;
        let method = PaymentMethod {
            id: card.gateway_id,
            brand: card.brand,
            last4: card.last4,
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            country: card.country,
            created_at: now,
        };
        let reference = GatewayRef {
            tenant_id: caller.tenant_id,
            account_id,
            payment_id: None,
        };
        for _ in 0..WRITE_ATTEMPTS {
            let next = profile
                .add(method.clone(), make_default)?
                .after(profile.version);
            let change =
                self.method_change(caller, &next, &method, EventType::PaymentMethodAttached)?;
            match self
                .store
                .save_payment_profile(
                    caller.tenant_id,
                    &next,
                    &[(method.id.clone(), reference.clone())],
                    Some(&change),
                )
                .await
            {
                Err(StoreError::VersionConflict { .. }) => {
                    // Another change to the account's cards came first: apply ours to it,
                    // keeping the customer that is stored (or the one just made).
                    let stored = self.payment_profile(caller, account_id).await?;
                    profile = match stored.customer {
                        Some(_) => stored,
                        None => stored.with_customer(customer.clone()),
                    };
                }
                other => {
                    other?;
                    let is_default = next.default_method.as_deref() == Some(method.id.as_str());
                    return Ok((method, is_default));
                }
            }
        }
        Err(AppError::Unavailable(
            "the account's cards kept changing; retry".into(),
        ))
    }

    /// The account's cards, oldest first, and which one is charged.
    pub async fn list_payment_methods(
        &self,
        caller: &Caller,
        account_id: AccountId,
    ) -> Result<PaymentProfile, AppError> {
        caller.require(Permission::Read)?;
        match self
            .store
            .get_payment_profile(caller.tenant_id, account_id)
            .await?
        {
            Some(profile) => Ok(profile),
            // No cards yet, or no such account: only the account can tell.
            None => {
                self.get_account(caller, account_id).await?;
                Ok(PaymentProfile::new(
                    account_id,
                    self.gateways.name(caller.livemode),
                ))
            }
        }
    }

    pub async fn set_default_payment_method(
        &self,
        caller: &Caller,
        account_id: AccountId,
        method_id: &str,
    ) -> Result<PaymentProfile, AppError> {
        caller.require(Permission::WriteAccounts)?;
        self.change_profile(
            caller,
            account_id,
            method_id,
            EventType::PaymentMethodUpdated,
            |p| p.set_default(method_id),
        )
        .await
    }

    /// Detaches a card at the gateway and forgets it.
    pub async fn remove_payment_method(
        &self,
        caller: &Caller,
        account_id: AccountId,
        method_id: &str,
    ) -> Result<PaymentProfile, AppError> {
        caller.require(Permission::WriteAccounts)?;
        let profile = self.payment_profile(caller, account_id).await?;
        profile
            .get(method_id)
            .ok_or_else(|| unknown_method(method_id))?;
        let gateway = self
            .gateways
            .of_tenant(&*self.store, caller.tenant_id, caller.livemode)
            .await?
            .map_err(refused)?;
        match gateway.detach_payment_method(method_id).await {
            // Already gone at the gateway (detached there): forget it here too.
            Ok(()) | Err(GatewayError::Rejected { .. }) => {}
            Err(unavailable) => return Err(gateway_unavailable(unavailable)),
        }
        self.forget_payment_method(caller, account_id, method_id)
            .await
    }

    /// Forgets a card that is gone at the gateway (detached there, or by
    /// [`Self::remove_payment_method`]): collection's way in when the gateway reports it.
    pub async fn forget_payment_method(
        &self,
        caller: &Caller,
        account_id: AccountId,
        method_id: &str,
    ) -> Result<PaymentProfile, AppError> {
        self.change_profile(
            caller,
            account_id,
            method_id,
            EventType::PaymentMethodDetached,
            |p| p.remove(method_id),
        )
        .await
    }

    /// Applies `step` to the stored profile and writes it, retried over concurrent changes.
    async fn change_profile(
        &self,
        caller: &Caller,
        account_id: AccountId,
        method_id: &str,
        event_type: EventType,
        step: impl Fn(&PaymentProfile) -> Option<PaymentProfile>,
    ) -> Result<PaymentProfile, AppError> {
        let step = &step;
        until_committed(
            move || async move {
                let current = self.payment_profile(caller, account_id).await?;
                let method = current
                    .get(method_id)
                    .cloned()
                    .ok_or_else(|| unknown_method(method_id))?;
                let next = step(&current)
                    .ok_or_else(|| unknown_method(method_id))?
                    .after(current.version);
                let change = self.method_change(caller, &next, &method, event_type)?;
                match self
                    .store
                    .save_payment_profile(caller.tenant_id, &next, &[], Some(&change))
                    .await
                {
                    Err(StoreError::VersionConflict { .. }) => Ok(None),
                    other => Ok(other.map(|()| Some(next))?),
                }
            },
            || AppError::Unavailable("the account's cards kept changing; retry".into()),
        )
        .await
    }

    fn method_change(
        &self,
        caller: &Caller,
        profile: &PaymentProfile,
        method: &PaymentMethod,
        event_type: EventType,
    ) -> Result<Change, AppError> {
        let mut after = to_json(method)?;
        after["object"] = "payment_method".into();
        after["account_id"] = profile.account_id.to_string().into();
        after["default"] = (profile.default_method.as_deref() == Some(method.id.as_str())).into();
        Ok(change(
            caller,
            self.clocks.now(),
            ChangeSpec {
                entity_type: "payment_method",
                entity_id: method.id.clone(),
                action: match event_type {
                    EventType::PaymentMethodAttached => AuditAction::Create,
                    EventType::PaymentMethodDetached => AuditAction::Delete,
                    _ => AuditAction::Update,
                },
                event_type: Some(event_type),
                before: None,
                after: &after,
            },
        ))
    }
}
