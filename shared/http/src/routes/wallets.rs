//! Prepaid wallets: creating them, top-ups, a wallet with its balances and transactions,
//! an account's wallets.

use axum::extract::State;
use axum::http::StatusCode;
use billing_app::wallets::{CreateWallet, WalletView};
use billing_app::App;
use billing_domain::kernel::currency::Currency;
use billing_domain::kernel::decimal::{parse_decimal, to_canonical_string};
use billing_domain::kernel::error::ErrorCode;
use billing_domain::kernel::ids::{AccountId, WalletId};
use billing_domain::wallets::wallet::{
    NewRule, TopUpInterval, Wallet, WalletTransaction, MAX_SCALE,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{path_id, timestamp, ApiJson, ApiPath, ApiQuery, Auth, Reply};
use crate::pagination::{page_request, List};
use crate::problem::{ApiResult, Problem, ProblemDocument};

crate::routes::handlers!(
    create_wallet,
    top_up_wallet,
    get_wallet,
    list_account_wallets
);

fn decimal(raw: Option<&str>, param: &'static str, code: ErrorCode) -> Result<Decimal, Problem> {
    match raw {
        None => Ok(Decimal::ZERO),
        Some(raw) => {
            parse_decimal(raw, MAX_SCALE).map_err(|e| Problem::invalid(code, param, e.to_string()))
        }
    }
}

fn credits(raw: Option<&str>, param: &'static str) -> Result<Decimal, Problem> {
    decimal(raw, param, ErrorCode::InvalidCredits)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringRuleBody {
    /// `weekly` or `monthly` from the wallet's creation: a scheduled top-up.
    pub interval: Option<TopUpInterval>,
    /// Or: when the ongoing balance falls under this many credits (once per crossing).
    pub threshold_credits: Option<String>,
    pub granted_credits: Option<String>,
    pub paid_credits: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account": "acct_01JD0000000000000000000000", "rate_amount": "1", "granted_credits": "100", "paid_credits": "50", "recurring_rules": [{"threshold_credits": "20", "paid_credits": "50"}]}))]
pub struct NewWalletBody {
    pub account: String,
    /// Defaults to the account's currency.
    pub currency: Option<String>,
    pub name: Option<String>,
    /// What one credit is worth in the currency's major unit, a decimal string (`"1"`:
    /// one credit is one dollar; `"0.01"`: one cent).
    pub rate_amount: String,
    /// Free credits, added at once.
    pub granted_credits: Option<String>,
    /// Credits bought: a top-up invoice is issued and charged now; they arrive when it is
    /// paid.
    pub paid_credits: Option<String>,
    /// After this time the wallet is no longer consumed; what remains leaves it.
    pub expires_at: Option<String>,
    #[serde(default)]
    pub recurring_rules: Vec<RecurringRuleBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"granted_credits": "10", "paid_credits": "50"}))]
pub struct TopUpBody {
    pub granted_credits: Option<String>,
    pub paid_credits: Option<String>,
}

/// A wallet as the API shows it: its money in minor units and in credits; from `GET`, also
/// its ongoing balance and one page of its transactions.
#[derive(Debug, Serialize, ToSchema)]
pub struct WalletResponse {
    pub object: &'static str,
    #[serde(flatten)]
    pub wallet: Wallet,
    /// `balance` in credits.
    pub credits_balance: String,
    /// The balance less the usage of the account's current periods not invoiced yet
    /// (untaxed), minor units; may be negative.
    pub ongoing_balance: Option<i64>,
    pub credits_ongoing_balance: Option<String>,
    /// Newest first (paginated with `limit` and `starting_after`).
    #[schema(inline)]
    pub transactions: Option<List<WalletTransaction>>,
}

impl WalletResponse {
    fn of(wallet: Wallet) -> Self {
        WalletResponse {
            object: "wallet",
            credits_balance: to_canonical_string(wallet.credits(wallet.balance)),
            ongoing_balance: None,
            credits_ongoing_balance: None,
            transactions: None,
            wallet,
        }
    }

    fn view(view: WalletView) -> Self {
        let ongoing = view.ongoing_balance;
        let credits = ongoing_credits(&view.wallet, ongoing);
        WalletResponse {
            ongoing_balance: Some(ongoing),
            credits_ongoing_balance: Some(credits),
            transactions: Some(List::from_page(
                view.transactions,
                |t: &WalletTransaction| t.id.to_string(),
                |t| t,
            )),
            ..Self::of(view.wallet)
        }
    }
}

fn ongoing_credits(wallet: &Wallet, ongoing: i64) -> String {
    let magnitude = wallet.credits(billing_domain::kernel::money::MinorUnits::new(
        ongoing.saturating_abs(),
    ));
    to_canonical_string(if ongoing < 0 { -magnitude } else { magnitude })
}

/// Creates a prepaid wallet for an account: granted credits at once; paid credits through
/// a top-up invoice issued and charged now, whose credits arrive when it is paid. Invoices
/// of the account in the wallet's currency consume it when they are finalized, after
/// discounts, tax and the account's balance credit.
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", security(("api_key" = ["write_billing"])), request_body = NewWalletBody,
    responses((status = 201, body = WalletResponse), (status = 400, body = ProblemDocument)))]
pub async fn create_wallet(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<NewWalletBody>,
) -> ApiResult<Reply<WalletResponse>> {
    let mut rules = Vec::with_capacity(req.recurring_rules.len());
    for rule in &req.recurring_rules {
        rules.push(NewRule {
            interval: rule.interval,
            threshold_credits: rule
                .threshold_credits
                .as_deref()
                .map(|raw| credits(Some(raw), "recurring_rules.threshold_credits"))
                .transpose()?,
            granted_credits: credits(
                rule.granted_credits.as_deref(),
                "recurring_rules.granted_credits",
            )?,
            paid_credits: credits(rule.paid_credits.as_deref(), "recurring_rules.paid_credits")?,
        });
    }
    let wallet = CreateWallet {
        account: AccountId::parse(&req.account, "account")?,
        currency: req
            .currency
            .as_deref()
            .map(|c| {
                Currency::from_code(c).map_err(|e| {
                    Problem::invalid(ErrorCode::InvalidCurrency, "currency", e.to_string())
                })
            })
            .transpose()?,
        name: req.name,
        rate_amount: decimal(
            Some(&req.rate_amount),
            "rate_amount",
            ErrorCode::InvalidRateAmount,
        )?,
        granted_credits: credits(req.granted_credits.as_deref(), "granted_credits")?,
        paid_credits: credits(req.paid_credits.as_deref(), "paid_credits")?,
        expires_at: timestamp(req.expires_at.as_deref(), "expires_at")?,
        rules,
    };
    Ok(Reply(
        StatusCode::CREATED,
        WalletResponse::of(app.wallets.create_wallet(&caller, wallet).await?),
    ))
}

/// Tops a wallet up: granted credits at once, paid credits through a top-up invoice
/// (charged now; they arrive when it is paid, once).
#[utoipa::path(post, path = "/v1/wallets/{id}/top-ups", tag = "wallets", security(("api_key" = ["write_billing"])), request_body = TopUpBody,
    params(("id" = String, Path, description = "`wal_…`")),
    responses((status = 201, body = WalletResponse), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument)))]
pub async fn top_up_wallet(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<TopUpBody>,
) -> ApiResult<Reply<WalletResponse>> {
    let id = path_id(&id, "wallet", WalletId::parse)?;
    let granted = credits(req.granted_credits.as_deref(), "granted_credits")?;
    let paid = credits(req.paid_credits.as_deref(), "paid_credits")?;
    Ok(Reply(
        StatusCode::CREATED,
        WalletResponse::of(app.wallets.top_up(&caller, id, granted, paid).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WalletQuery {
    limit: Option<i64>,
    starting_after: Option<String>,
}

/// A wallet: its balance, its ongoing balance (less the usage not invoiced yet) and one
/// page of its transactions, newest first.
#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "wallets", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`wal_…`"), WalletQuery),
    responses((status = 200, body = WalletResponse), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn get_wallet(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WalletQuery>,
) -> ApiResult<Reply<WalletResponse>> {
    let id = path_id(&id, "wallet", WalletId::parse)?;
    let page = page_request(q.limit, q.starting_after)?;
    Ok(Reply(
        StatusCode::OK,
        WalletResponse::view(app.wallets.get_wallet(&caller, id, &page).await?),
    ))
}

/// The account's wallets, newest first.
#[utoipa::path(get, path = "/v1/accounts/{id}/wallets", tag = "wallets", security(("api_key" = ["read"])),
    params(("id" = String, Path, description = "`acct_…`"), WalletQuery),
    responses((status = 200, body = inline(List<WalletResponse>)), (status = 400, body = ProblemDocument), (status = 404, body = ProblemDocument)))]
pub async fn list_account_wallets(
    State(app): State<App>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WalletQuery>,
) -> ApiResult<Reply<List<WalletResponse>>> {
    let account = path_id(&id, "account", AccountId::parse)?;
    let page = page_request(q.limit, q.starting_after)?;
    let wallets = app.wallets.list_wallets(&caller, account, &page).await?;
    Ok(Reply(
        StatusCode::OK,
        List::from_page(wallets, |w: &Wallet| w.id.to_string(), WalletResponse::of),
    ))
}
