//! The price calculator: an amount and its derivation for some usage, writing nothing.

use std::collections::BTreeMap;

use billing_domain::catalog::capacity::{Capacity, CapacityPriced};
use billing_domain::catalog::charges::{ChargeModel, Commitment, Priced, PricingError, Usage};
use billing_domain::catalog::plan::PlanVersion;
use billing_domain::customers::access::Permission;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::PlanId;
use rust_decimal::Decimal;

use super::{invalid, CatalogService};
use crate::kernel::{AppError, Caller};

/// What the price calculator prices.
#[derive(Debug, Clone, PartialEq)]
pub enum PriceSource {
    Inline(ChargeModel),
    /// A plan's charge in the version in effect now: the usage charge on `metric`, or the
    /// recurring fee when `metric` is `None`.
    Plan {
        plan_id: PlanId,
        metric: Option<String>,
    },
}

/// What the price calculator prices for capacity (Kill Bill's `CAPACITY` usage).
#[derive(Debug, Clone, PartialEq)]
pub enum CapacitySource {
    Inline(Capacity),
    /// A plan's capacity charge `code` in the version in effect now.
    Plan {
        plan_id: PlanId,
        code: String,
    },
}

impl CatalogService {
    /// The price calculator for capacity: the price of the first tier whose every limit
    /// holds for `units` (usage per unit type or metric). Writes nothing.
    pub async fn preview_capacity(
        &self,
        caller: &Caller,
        source: CapacitySource,
        currency: Currency,
        units: BTreeMap<String, Decimal>,
    ) -> Result<CapacityPriced, AppError> {
        caller.require(Permission::Read)?;
        let capacity = match source {
            CapacitySource::Inline(capacity) => {
                capacity.validate().map_err(|e| e.within("capacity"))?;
                capacity
            }
            CapacitySource::Plan { plan_id, code } => {
                let prices = self.prices_in_effect(caller, plan_id, currency).await?;
                let charge = prices.capacity_charge(&code).ok_or_else(|| {
                    invalid(
                        ErrorCode::UnknownCapacityCharge,
                        "capacity_charge",
                        format!("the plan has no capacity charge `{code}`"),
                    )
                })?;
                charge.prices.get(&currency).cloned().ok_or_else(|| {
                    invalid(
                        ErrorCode::CurrencyNotOffered,
                        "currency",
                        "the charge has no price in this currency",
                    )
                })?
            }
        };
        let limited = &capacity.tiers[0].limits;
        if let Some(unit) = units.keys().find(|u| !limited.contains_key(*u)) {
            return Err(AppError::Invalid(
                billing_domain::kernel::error::ValidationError::new(
                    ErrorCode::InvalidUsage,
                    format!("units.{unit}"),
                    "the capacity charge has no limit on this unit type",
                ),
            ));
        }
        capacity.price(&units, currency).map_err(|e| match e {
            PricingError::Invalid(v) => AppError::Invalid(v.within("capacity")),
            other => invalid(ErrorCode::InvalidUsage, "units", other.to_string()),
        })
    }

    /// The price calculator: prices `usage` in `currency` with an inline charge or a plan's
    /// charge, returning the amount with its derivation. Writes nothing.
    pub async fn preview_price(
        &self,
        caller: &Caller,
        source: PriceSource,
        currency: Currency,
        usage: Usage,
        commitment: Option<Commitment>,
    ) -> Result<Priced, AppError> {
        caller.require(Permission::Read)?;
        let (model, commitment) = match source {
            PriceSource::Inline(model) => {
                model.validate().map_err(|e| e.within("charge"))?;
                if let Some(c) = &commitment {
                    c.validate().map_err(|e| e.within("commitment"))?;
                }
                (model, commitment)
            }
            PriceSource::Plan { plan_id, metric } => {
                let prices = self.prices_in_effect(caller, plan_id, currency).await?;
                match metric {
                    None => {
                        let model =
                            prices.recurring_fee_in(currency).cloned().ok_or_else(|| {
                                invalid(
                                    ErrorCode::NoRecurringFee,
                                    "metric",
                                    "the plan has no recurring fee; name a metric",
                                )
                            })?;
                        (model, commitment)
                    }
                    Some(code) => {
                        let charge = prices.usage_charge(&code).ok_or_else(|| {
                            invalid(
                                ErrorCode::UnknownMetric,
                                "metric",
                                format!("the plan has no usage charge on `{code}`"),
                            )
                        })?;
                        let model = charge.prices.get(&currency).cloned().ok_or_else(|| {
                            invalid(
                                ErrorCode::CurrencyNotOffered,
                                "currency",
                                "the charge has no price in this currency",
                            )
                        })?;
                        (model, commitment.or(charge.commitment))
                    }
                }
            }
        };
        let priced = model.price(&usage, currency).map_err(|e| match e {
            PricingError::Invalid(v) => AppError::Invalid(v.within("charge")),
            PricingError::Overflow => invalid(
                ErrorCode::AmountTooLarge,
                "usage",
                "the amount does not fit in 64-bit minor units",
            ),
            other => invalid(ErrorCode::InvalidUsage, "usage", other.to_string()),
        })?;
        Ok(match commitment {
            Some(c) => priced.with_commitment(&c),
            None => priced,
        })
    }

    /// The version of `plan_id` in effect now, which must price in `currency`.
    async fn prices_in_effect(
        &self,
        caller: &Caller,
        plan_id: PlanId,
        currency: Currency,
    ) -> Result<PlanVersion, AppError> {
        let prices = self
            .get_plan(caller, plan_id)
            .await?
            .prices
            .ok_or_else(|| {
                invalid(
                    ErrorCode::PlanNotInEffect,
                    "plan_id",
                    "the plan has no prices in effect yet",
                )
            })?;
        prices
            .require_currency(currency)
            .map_err(|e| invalid(ErrorCode::CurrencyNotOffered, "currency", e.to_string()))?;
        Ok(prices)
    }
}
