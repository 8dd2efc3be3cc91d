//! Customer accounts: create, read, list, update, soft-delete.

use billing_domain::customers::access::Permission;
use billing_domain::customers::account::{Account, AccountPatch, NewAccount};
use billing_domain::events::record::AuditAction;
use billing_domain::events::types::EventType;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::AccountId;
use billing_domain::tax::vat_id::VatIdStatus;

use super::CustomersService;
use crate::kernel::{change, new_ulid, to_json, AppError, Caller, ChangeSpec};
use crate::ports::{AccountFilter, Page, PageRequest};

const ENTITY: &str = "account";

impl CustomersService {
    pub async fn create_account(
        &self,
        caller: &Caller,
        input: NewAccount,
    ) -> Result<Account, AppError> {
        caller.require(Permission::WriteAccounts)?;
        if let Some(clock) = input.test_clock {
            if caller.livemode {
                return Err(AppError::Invalid(
                    billing_domain::kernel::error::ValidationError::new(
                        ErrorCode::TestClockInLivemode,
                        "test_clock",
                        "test clocks exist only for sandbox tenants",
                    ),
                ));
            }
            if self
                .store
                .get_test_clock(caller.tenant_id, clock)
                .await?
                .is_none()
            {
                return Err(AppError::Invalid(
                    billing_domain::kernel::error::ValidationError::new(
                        ErrorCode::UnknownTestClock,
                        "test_clock",
                        format!("no such test clock: {clock}"),
                    ),
                ));
            }
        }
        let now = self.clocks.now();
        let mut account = Account::create(AccountId::from_ulid(new_ulid()), input, now)?;
        account.vat_id_status = self.vat_id_status(caller, &account).await?;
        let after = to_json(&account)?;
        let change = change(
            caller,
            now,
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: account.id.to_string(),
                action: AuditAction::Create,
                event_type: Some(EventType::AccountCreated),
                before: None,
                after: &after,
            },
        );
        self.store
            .insert_account(caller.tenant_id, &account, &change)
            .await?;
        Ok(account)
    }

    pub async fn get_account(&self, caller: &Caller, id: AccountId) -> Result<Account, AppError> {
        caller.require(Permission::Read)?;
        self.store
            .get_account(caller.tenant_id, id)
            .await?
            .ok_or_else(|| AppError::not_found(ENTITY, id))
    }

    pub async fn list_accounts(
        &self,
        caller: &Caller,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<Account>, AppError> {
        caller.require(Permission::Read)?;
        Ok(self
            .store
            .list_accounts(caller.tenant_id, filter, page)
            .await?)
    }

    pub async fn update_account(
        &self,
        caller: &Caller,
        id: AccountId,
        patch: AccountPatch,
    ) -> Result<Account, AppError> {
        caller.require(Permission::WriteAccounts)?;
        let current = self.get_account(caller, id).await?;
        let mut next = current.apply(patch, self.clocks.now())?;
        if next.vat_id != current.vat_id {
            next.vat_id_status = self.vat_id_status(caller, &next).await?;
        }
        self.save_account(
            caller,
            &current,
            &next,
            AuditAction::Update,
            EventType::AccountUpdated,
        )
        .await?;
        Ok(next)
    }

    pub async fn delete_account(
        &self,
        caller: &Caller,
        id: AccountId,
    ) -> Result<Account, AppError> {
        caller.require(Permission::WriteAccounts)?;
        let current = self.get_account(caller, id).await?;
        // On the account's time, which its purge 30 days later counts from.
        let now = self
            .clocks
            .now_for(caller.tenant_id, current.test_clock)
            .await?;
        let next = current.delete(now)?;
        self.save_account(
            caller,
            &current,
            &next,
            AuditAction::Delete,
            EventType::AccountDeleted,
        )
        .await?;
        Ok(next)
    }

    /// What the registry says of the account's VAT id, when its tenant asks (tax).
    async fn vat_id_status(
        &self,
        caller: &Caller,
        account: &Account,
    ) -> Result<Option<VatIdStatus>, AppError> {
        match &account.vat_id {
            Some(vat_id) => {
                self.tax
                    .vat_id_status(caller.tenant_id, vat_id, "vat_id")
                    .await
            }
            None => Ok(None),
        }
    }

    async fn save_account(
        &self,
        caller: &Caller,
        current: &Account,
        next: &Account,
        action: AuditAction,
        event_type: EventType,
    ) -> Result<(), AppError> {
        let (before, after) = (to_json(current)?, to_json(next)?);
        let change = change(
            caller,
            next.updated_at,
            ChangeSpec {
                entity_type: ENTITY,
                entity_id: next.id.to_string(),
                action,
                event_type: Some(event_type),
                before: Some(&before),
                after: &after,
            },
        );
        self.store
            .update_account(caller.tenant_id, current, next, &change)
            .await?;
        Ok(())
    }
}
