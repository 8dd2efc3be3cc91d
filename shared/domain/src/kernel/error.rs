//! The one error type for rejected input, shared by every validation in the domain, and
//! the catalog of every problem `code` the API answers with.

/// Declares the catalog once: the enum, its wire names, HTTP statuses and descriptions.
macro_rules! error_codes {
    ($($variant:ident => $name:literal, $status:literal, $description:literal;)*) => {
        /// Every stable, machine-readable reason the API gives for refusing a request (the
        /// problem document's `code`). Errors take this enum, so a code cannot be answered
        /// without being documented.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire form, e.g. `invalid_email`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// The HTTP status a problem with this code always has.
            pub const fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            pub const fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $description,)*
                }
            }
        }
    };
}

error_codes! {
    MalformedJson => "malformed_json", 400, "The body is not well-formed JSON.";
    UnknownField => "unknown_field", 400,
        "The body has a field this endpoint does not know (`param` names it).";
    MissingField => "missing_field", 400, "A required field is missing (`param` names it).";
    InvalidValue => "invalid_value", 400,
        "A field has the wrong type or an unknown enum value, or a usage value does not fit its \
         metric.";
    InvalidQuery => "invalid_query", 400, "A query parameter could not be read (`param` names it).";
    InvalidPath => "invalid_path", 400,
        "A path segment is not valid UTF-8 once percent-decoded.";
    InvalidId => "invalid_id", 400, "An id is not of the form `prefix_` followed by 26 characters.";
    InvalidLimit => "invalid_limit", 400, "A list's `limit` is outside 1–100.";
    InvalidTimestamp => "invalid_timestamp", 400,
        "A time is not RFC 3339 (`2026-11-22T10:00:00Z`).";
    TimestampOutOfRange => "timestamp_out_of_range", 400,
        "A time is outside the supported range, 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z.";
    DurationOutOfRange => "duration_out_of_range", 400,
        "A number of days is above its limit (`detail` says which).";
    InvalidRange => "invalid_range", 400, "A time range is incomplete or ends before it starts.";
    InvalidIdempotencyKey => "invalid_idempotency_key", 400,
        "The `Idempotency-Key` is empty, too long or not printable ASCII.";
    UnsupportedMediaType => "unsupported_media_type", 415, "The body is not `application/json`.";
    BodyTooLarge => "body_too_large", 413,
        "The body is larger than 64 KiB (2 MiB for Stripe's webhook); the connection closes.";
    HeadersTooLarge => "headers_too_large", 431,
        "More than 100 request headers, or more than 16 KiB of them; the connection closes.";
    Unauthenticated => "unauthenticated", 401,
        "No API key, or one that is unknown.";
    ApiKeyExpired => "api_key_expired", 401,
        "The API key passed its `expires_at` (a rolled key's overlap ended); use its successor.";
    ApiKeyRevoked => "api_key_revoked", 401, "The API key was revoked.";
    JwtMalformed => "jwt_malformed", 401,
        "A bearer JWT that cannot be read, or lacks `kid`, `iss`, `sub` or `exp`.";
    JwtAlgorithmRefused => "jwt_algorithm_refused", 401,
        "A bearer JWT whose `alg` is not RS256 or ES256 (`none` and HS256 included), or does not \
         fit its key.";
    JwtIssuerUntrusted => "jwt_issuer_untrusted", 401,
        "A bearer JWT from an issuer no tenant trusts (`/v1/settings/identity-provider`).";
    JwtAudienceMismatch => "jwt_audience_mismatch", 401,
        "A bearer JWT whose `aud` does not name the audience the tenant configured.";
    JwtExpired => "jwt_expired", 401, "A bearer JWT past its `exp` (60 s of clock skew allowed).";
    JwtNotYetValid => "jwt_not_yet_valid", 401,
        "A bearer JWT before its `nbf` (60 s of clock skew allowed).";
    JwtKeyUnknown => "jwt_key_unknown", 401,
        "A bearer JWT whose `kid` is not in the issuer's JWKS, even after refetching it.";
    JwtSignatureInvalid => "jwt_signature_invalid", 401,
        "A bearer JWT whose signature does not verify with the issuer's key.";
    JwtRoleInvalid => "jwt_role_invalid", 401,
        "A bearer JWT whose role claim names none of the four roles as the tenant maps them.";
    JwtTenantUntrusted => "jwt_tenant_untrusted", 401,
        "A bearer JWT whose tenant claim names a tenant that does not trust its issuer.";
    RateLimited => "rate_limited", 429,
        "The key or the tenant made more requests than its limit allows; `Retry-After` says \
         when to try again.";
    Forbidden => "forbidden", 403,
        "The key's role does not allow this operation, or the route is not open to API keys.";
    ResourceMissing => "resource_missing", 404,
        "No such resource for the tenant of the key, or no such route.";
    MethodNotAllowed => "method_not_allowed", 405, "The route does not accept this method.";
    AlreadyExists => "already_exists", 409, "The resource already exists.";
    DuplicateValue => "duplicate_value", 409,
        "Another resource already has this unique value (`param` names the field).";
    ConcurrentModification => "concurrent_modification", 409,
        "The resource changed while the request ran; fetch it and decide again.";
    IdempotencyKeyReused => "idempotency_key_reused", 409,
        "The `Idempotency-Key` was already used with a different request.";
    IdempotencyKeyInUse => "idempotency_key_in_use", 409,
        "A request with this `Idempotency-Key` is still being processed.";
    InvalidTransition => "invalid_transition", 409,
        "The resource's status does not allow this action (e.g. voiding a paid invoice).";
    TemporarilyUnavailable => "temporarily_unavailable", 503,
        "A transient failure; retry with the same `Idempotency-Key`.";
    NotReady => "not_ready", 503, "The service cannot reach its table (readiness probe).";
    InternalError => "internal_error", 500, "Something went wrong on our side.";
    MetadataTooLarge => "metadata_too_large", 400, "`metadata` has more than 50 keys.";
    InvalidMetadataKey => "invalid_metadata_key", 400,
        "A `metadata` key is empty or longer than 40 characters.";
    InvalidMetadataValue => "invalid_metadata_value", 400,
        "A `metadata` value is longer than 500 characters.";
    TooLong => "too_long", 400, "A text field is longer than its limit.";
    InvalidEmail => "invalid_email", 400, "Not a valid email address.";
    InvalidColor => "invalid_color", 400, "A colour is not of the form `#rrggbb`.";
    InvalidLogo => "invalid_logo", 400,
        "The logo is not a PNG, JPEG or SVG within 1 to 2000 px a side, or the SVG has script or external references.";
    LogoTooLarge => "logo_too_large", 413, "The logo is larger than 256 KB.";
    InvalidCountry => "invalid_country", 400, "Not an ISO 3166-1 alpha-2 country code.";
    InvalidCurrency => "invalid_currency", 400, "Not a supported ISO 4217 currency.";
    InvalidTimezone => "invalid_timezone", 400, "Not an IANA time zone.";
    InvalidVatId => "invalid_vat_id", 400, "Not a valid VAT id.";
    InvalidExternalId => "invalid_external_id", 400,
        "An `external_id` is empty, too long or has characters outside the allowed set.";
    InvalidName => "invalid_name", 400, "A name is empty or too long.";
    InvalidDescription => "invalid_description", 400, "A description is too long.";
    AccountDeleted => "account_deleted", 409, "The account is deleted.";
    AccountBlocked => "account_blocked", 409,
        "The account is blocked by dunning until it pays its overdue invoices.";
    UnknownAccount => "unknown_account", 400, "The account named in the request does not exist.";
    InvalidApiKey => "invalid_api_key", 400,
        "Not an API key of the form `sk_test_<tenant id>_<secret>`.";
    InvalidExpiresAt => "invalid_expires_at", 400, "A key's `expires_at` is not in the future.";
    InvalidRateLimit => "invalid_rate_limit", 400, "A rate limit is not 1 to 100,000,000 requests.";
    AlreadyRevoked => "already_revoked", 409, "The API key is already revoked.";
    CannotRevokeOwnKey => "cannot_revoke_own_key", 409,
        "A key cannot revoke itself; use another admin key.";
    UnknownTestClock => "unknown_test_clock", 400,
        "The test clock named in the request does not exist.";
    TestClockInLivemode => "test_clock_in_livemode", 400,
        "Test clocks are for sandbox tenants only.";
    TestClockAdvancing => "test_clock_advancing", 409,
        "The test clock is still advancing; wait until its status is `ready`.";
    InvalidFrozenTime => "invalid_frozen_time", 400, "A test clock only moves forward.";
    InvalidCode => "invalid_code", 400,
        "A plan or metric code is not 1–64 lower-case letters, digits, `_`, `-` or `.`.";
    InvalidField => "invalid_field", 400,
        "A metric's aggregation `field` is not a valid property name.";
    RecurringUnsupported => "recurring_unsupported", 400,
        "Only levels carry over: `recurring` is for sum, max, latest and weighted_sum metrics.";
    InvalidInterval => "invalid_interval", 400, "A plan's billing interval is not valid.";
    InvalidTrial => "invalid_trial", 400, "A plan's `trial_days` is out of range.";
    InvalidCharge => "invalid_charge", 400,
        "A usage charge's price, tiers or limits are not valid.";
    MissingPrices => "missing_prices", 400, "A price needs an amount in at least one currency.";
    DuplicateCurrency => "duplicate_currency", 400, "A currency is priced twice.";
    CurrencyMismatch => "currency_mismatch", 400,
        "A charge is priced in a currency the plan does not offer.";
    NoCharges => "no_charges", 400, "A plan has neither a recurring fee nor a usage charge.";
    TooManyCharges => "too_many_charges", 400, "A plan has more usage charges than allowed.";
    DuplicateMetric => "duplicate_metric", 400, "A plan charges the same metric twice.";
    UnknownMetric => "unknown_metric", 400, "No metric has this code.";
    UsageValueTooLarge => "usage_value_too_large", 400,
        "A usage value is beyond what can be billed: larger in magnitude than 10^15, or it \
         would make the period's charge for its metric too large to price in 64-bit minor \
         units. Nothing was recorded for the event.";
    UsageUnpriceable => "usage_unpriceable", 409,
        "The subscription's usage cannot be priced (an amount does not fit in 64-bit minor \
         units); its billing is parked until an operator retries it.";
    PerTransactionRulesUnsupported => "per_transaction_rules_unsupported", 400,
        "Per-transaction rules are not supported for this charge model.";
    EffectiveFromInPast => "effective_from_in_past", 400,
        "A plan version cannot take effect in the past.";
    EffectiveFromOutOfOrder => "effective_from_out_of_order", 400,
        "A plan version must take effect after the versions before it.";
    InvalidMigrationNotice => "invalid_migration_notice", 400,
        "A plan version's `migration_notice_days` is 0 to 90, and more than 0 only with \
         `migrate_existing: true`.";
    NoRecurringFee => "no_recurring_fee", 400, "The plan has no recurring fee to price.";
    UnexpectedField => "unexpected_field", 400,
        "The field does not apply to this kind of price preview.";
    InvalidSource => "invalid_source", 400,
        "A preview needs exactly one source: a subscription, lines, or a plan or inline plan.";
    InvalidUsage => "invalid_usage", 400, "The hypothetical usage of a preview is not valid.";
    AmountTooLarge => "amount_too_large", 400, "The amount is too large to compute.";
    PlanInactive => "plan_inactive", 409, "The plan is deactivated and takes no new subscriptions.";
    UnknownPlan => "unknown_plan", 400, "No plan has this id or code.";
    PlanNotInEffect => "plan_not_in_effect", 400,
        "The plan has no version in effect at the requested time.";
    CurrencyNotOffered => "currency_not_offered", 400,
        "The plan has no price in the account's currency.";
    StartInPast => "start_in_past", 400, "A subscription cannot start in the past.";
    InvalidBillingAnchor => "invalid_billing_anchor", 400,
        "The billing anchor is not within the first period.";
    InvalidResumesAt => "invalid_resumes_at", 400,
        "`resumes_at` is not in the future or is past the longest pause.";
    MissingDaysUntilDue => "missing_days_until_due", 400,
        "Invoices the customer pays by themselves need `days_until_due`.";
    UnknownUsageCharge => "unknown_usage_charge", 400,
        "The subscription's plan has no usage charge for this metric.";
    UnknownSubscription => "unknown_subscription", 400,
        "The subscription named in the request does not exist.";
    MissingSubscription => "missing_subscription", 400,
        "The account has several subscriptions: name one.";
    NoSubscription => "no_subscription", 400,
        "The account has no subscription that bills this metric.";
    AmbiguousSubscription => "ambiguous_subscription", 400,
        "More than one subscription of the account bills this metric: name one.";
    SubscriptionCancelled => "subscription_cancelled", 400, "The subscription is cancelled.";
    NoUpcomingInvoice => "no_upcoming_invoice", 409, "The subscription has nothing more to bill.";
    InvalidCoupon => "invalid_coupon", 400,
        "A coupon's terms are not valid: exactly one of `percent_off` (above 0, at most 100, \
         at most 4 decimals) and `amount_off` (positive minor units per currency); \
         `duration_in_periods` (1–120) with `repeating` only; `max_redemptions` at least 1.";
    InvalidCouponCode => "invalid_coupon_code", 400,
        "A coupon code is not 1–64 letters, digits, `_` or `-`.";
    UnknownCoupon => "unknown_coupon", 400, "No coupon has this code (or id).";
    CouponDeleted => "coupon_deleted", 409, "The coupon is deleted and takes no new redemptions.";
    CouponExpired => "coupon_expired", 409, "The coupon's `redeem_by` has passed.";
    CouponMaxedOut => "coupon_maxed_out", 409,
        "The coupon has been redeemed `max_redemptions` times.";
    CouponNotApplicable => "coupon_not_applicable", 409,
        "The coupon does not apply to the subscription's plan, or has no `amount_off` in the \
         subscription's (or account's) currency.";
    AlreadyDiscounted => "already_discounted", 409,
        "The subscription (or account) already carries a discount from this coupon, or its \
         most discounts (20).";
    InvalidInvoice => "invalid_invoice", 400,
        "The invoice is not valid (its lines, amounts or subscription).";
    MissingLines => "missing_lines", 400, "An invoice needs at least one line.";
    InvalidInvoicePrefix => "invalid_invoice_prefix", 400,
        "An invoice prefix is not 1 to 12 upper-case letters or digits.";
    InvoiceOfAnotherAccount => "invoice_of_another_account", 400,
        "The invoice belongs to another account.";
    InvalidBatch => "invalid_batch", 400, "A usage batch is empty or larger than allowed.";
    InvalidTransactionId => "invalid_transaction_id", 400,
        "A usage event's `transaction_id` is empty or too long.";
    InvalidProperties => "invalid_properties", 400,
        "A usage event's properties are not a flat object of allowed size.";
    InvalidQuantity => "invalid_quantity", 400, "A quantity is not a valid positive number.";
    PeriodClosed => "period_closed", 400, "The usage's period is already billed.";
    TimestampInFuture => "timestamp_in_future", 400,
        "A usage event is timestamped too far in the future.";
    TimestampBeforeSubscription => "timestamp_before_subscription", 400,
        "A usage event is timestamped before its subscription started.";
    InvalidAmount => "invalid_amount", 400, "An amount is not positive.";
    InvalidExpiry => "invalid_expiry", 400, "A credit's `expires_at` is not in the future.";
    InsufficientBalance => "insufficient_balance", 409,
        "The account's balance in this currency is smaller than the adjustment takes out.";
    InvalidRateAmount => "invalid_rate_amount", 400,
        "A wallet's `rate_amount` (currency units per credit) is not a positive decimal.";
    InvalidCredits => "invalid_credits", 400,
        "Wallet credits are not a non-negative decimal, or none were asked for.";
    WalletTerminated => "wallet_terminated", 409,
        "The wallet expired or was terminated: it takes no more top-ups.";
    InvalidTopUpRule => "invalid_top_up_rule", 400,
        "A recurring top-up rule needs `interval` or `threshold_credits`, and credits to add.";
    ProrationUnsupported => "proration_unsupported", 400,
        "A usage charge is `prorated` but its price model cannot be (only `per_unit`, `graduated` and `volume`).";
    UnknownCapacityCharge => "unknown_capacity_charge", 400,
        "The plan has no capacity charge with this code.";
    InvalidCreditCap => "invalid_credit_cap", 400,
        "A plan change's `credit_cap` (`paid`, `already_credited`) is not 0 to 10^18 minor units.";
    RefundTooLarge => "refund_too_large", 400,
        "The refund is larger than what is left of the payment.";
    InvalidReference => "invalid_reference", 400, "A payment reference is empty or too long.";
    InvalidDefault => "invalid_default", 400,
        "Only `true` can be set: make another card the default instead of unsetting this one.";
    UnknownPaymentMethod => "unknown_payment_method", 400, "No such payment method on the account.";
    TooManyPaymentMethods => "too_many_payment_methods", 400,
        "The account has as many payment methods as allowed.";
    PaymentMethodRefused => "payment_method_refused", 400,
        "The payment gateway refused the payment method.";
    InvoiceNotPayable => "invoice_not_payable", 409, "The invoice has nothing to pay.";
    NoFailedPayment => "no_failed_payment", 409, "The invoice has no failed payment to retry.";
    NotRefundable => "not_refundable", 409, "The payment was not collected through the gateway.";
    RefundRefused => "refund_refused", 409, "The payment gateway refused the refund.";
    InvalidRetrySchedule => "invalid_retry_schedule", 400,
        "The payment retry days are not increasing or are out of range.";
    InvalidStripeAccount => "invalid_stripe_account", 400,
        "A Stripe connected account id is `acct_` and letters and digits, at most 64 bytes.";
    InvalidDunningDay => "invalid_dunning_day", 400, "A dunning step's day is out of range.";
    DunningStepsOutOfOrder => "dunning_steps_out_of_order", 400,
        "Dunning steps must be in increasing order of days.";
    DunningBlockNotLast => "dunning_block_not_last", 400, "Blocking must be the last dunning step.";
    TooManyDunningSteps => "too_many_dunning_steps", 400,
        "The dunning policy has more steps than allowed.";
    InvalidUrl => "invalid_url", 400,
        "A webhook URL is not an absolute http(s) URL without credentials or fragment.";
    InsecureUrl => "insecure_url", 400, "Live webhook endpoints must use https.";
    ForbiddenUrl => "forbidden_url", 400, "A webhook URL points into a private network.";
    InvalidEnabledEvents => "invalid_enabled_events", 400, "`enabled_events` is empty or too long.";
    UnknownEventType => "unknown_event_type", 400,
        "An `enabled_events` entry is neither `*`, an event type of the catalog nor `family.*`.";
    InvalidOverlap => "invalid_overlap", 400, "A secret rotation's overlap is out of range.";
    TooManyEndpoints => "too_many_endpoints", 409,
        "The tenant has as many webhook endpoints as allowed; delete one first.";
    UnknownEndpoint => "unknown_endpoint", 400, "No such webhook endpoint.";
    EndpointDisabled => "endpoint_disabled", 409,
        "The webhook endpoint is disabled; enable it before resending.";
    NoEndpoints => "no_endpoints", 409, "No enabled webhook endpoint is subscribed to the event.";
    MissingSignature => "missing_signature", 400,
        "A Stripe webhook without a `Stripe-Signature` header.";
    MalformedSignature => "malformed_signature", 400,
        "A `Stripe-Signature` header that cannot be read.";
    StaleSignature => "stale_signature", 400, "A Stripe signature older than five minutes.";
    InvalidSignature => "invalid_signature", 400,
        "A Stripe signature that matches none of the endpoint secrets.";
    InvalidStripeEvent => "invalid_stripe_event", 400,
        "A signed Stripe event this version cannot read.";
    InvalidPercentage => "invalid_percentage", 400,
        "A tax percentage is not 0 to 100 with at most 4 decimals.";
    InvalidEffectiveDate => "invalid_effective_date", 400,
        "A tax rate change must take effect after the rate it replaces started.";
    TaxRateEnded => "tax_rate_ended", 409,
        "The tax rate was already replaced; change the rate that replaced it.";
    TaxRateMissing => "tax_rate_missing", 409,
        "A taxable sale has no tax rate for the customer's jurisdiction on the invoice date; \
         create one (or load the EU rates) or change the tax registrations.";
    InvoiceNotFinalized => "invoice_not_finalized", 409,
        "A draft invoice has no hosted page and no PDF; finalize it first.";
    InvalidFormToken => "invalid_form_token", 403,
        "A hosted page's form was not sent from the page it was served with (or from another site).";
    DocumentNotReady => "document_not_ready", 409,
        "The PDF is still being rendered (moments after finalizing); try again shortly.";
    NoActionRequired => "no_action_required", 409,
        "The invoice has no payment waiting for the customer to authenticate.";
}

impl ErrorCode {
    pub fn parse(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The problem document's `code`: an enum of every code, with what each means (in
/// `x-enum-descriptions`, aligned with `enum`) and the status it comes with.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::extensions::Extensions;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let describe = |c: &ErrorCode| format!("{} ({})", c.description(), c.status());
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Stable machine-readable reason; safe to branch on. `x-enum-descriptions` \
                 says what each code means and the HTTP status it comes with.",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .extensions(Some(Extensions::from_iter([(
                "x-enum-descriptions",
                ErrorCode::ALL.iter().map(describe).collect::<Vec<_>>(),
            )])))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

// Comparisons with wire names keep assertions on codes readable.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The README's error-code table (between its `error-codes` markers), from the catalog.
pub fn markdown_table() -> String {
    let mut table = String::from("| code | status | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            code.as_str(),
            code.status(),
            code.description().replace('|', "\\|")
        ));
    }
    table
}

/// The longest client text that becomes part of a DynamoDB key (an external id, a lookup
/// filter, a cursor), in bytes: a key is limited in bytes (1,024 for a sort key, 2,048 for
/// a partition key, prefixes included), and 255 emoji are 1,020 bytes.
pub const MAX_KEY_TEXT_BYTES: usize = 255;

/// Refuses client text longer than [`MAX_KEY_TEXT_BYTES`] in UTF-8, naming `param`.
pub fn check_key_text(value: &str, param: &str) -> Result<(), ValidationError> {
    if value.len() > MAX_KEY_TEXT_BYTES {
        return Err(ValidationError::new(
            ErrorCode::TooLong,
            param,
            format!("{param} must be at most {MAX_KEY_TEXT_BYTES} bytes in UTF-8"),
        ));
    }
    Ok(())
}

/// Input that breaks a rule. `param` names the field at fault (`billing_address.country`,
/// `metadata`, `tiers[1].up_to`) so the API can point the caller at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ValidationError {
    /// Stable, machine-readable reason, e.g. `invalid_email`.
    pub code: ErrorCode,
    pub param: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(code: ErrorCode, param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            param: param.into(),
            message: message.into(),
        }
    }

    /// Re-roots the field path under a parent object: `country` → `billing_address.country`.
    pub fn within(mut self, parent: &str) -> Self {
        if !parent.is_empty() {
            self.param = if self.param.is_empty() {
                parent.to_owned()
            } else {
                format!("{parent}.{}", self.param)
            };
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_documented() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "no duplicates");
        for code in ErrorCode::ALL {
            assert!(code
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!(!code.description().is_empty());
            assert!((400..600).contains(&code.status()), "{code}");
        }
    }
}
