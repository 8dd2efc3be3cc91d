//! The hosted invoice pages, `/i/{token}`: served by the API's router (so by the `api`
//! Lambda and by `make dev`) outside the API-key guard, since the token is the credential.
//!
//! - `GET /i/{token}`: the invoice as HTML ([`page`]), with a pay form while it is open.
//! - `POST /i/{token}/pay`: pays with the card the form carries (a sandbox test card, or
//!   the `pm_…` Stripe.js made), then redirects back to the page (post/redirect/get).
//! - `POST /i/{token}/authenticate`: records the 3-D Secure authentication the customer
//!   just completed, then redirects back.
//! - `GET /i/{token}/pdf`: the invoice's PDF (the file, or a 302 to a presigned link), under
//!   the same admission and guess counting as the page.
//! - `GET /i/{token}/logo`: the seller's logo, same checks; an SVG under its own CSP
//!   (`default-src 'none'`), so even a file that slipped past the upload checks runs nothing.
//! - `GET /i/assets/hosted.js`: the page's only script.
//!
//! **Security.** The CSP allows no inline script and no other origin than Stripe's (only
//! when Stripe takes the card); the style is allowed by its hash. Each form carries a form
//! token (an HMAC keyed by the link's secret, for its purpose) and a cross-site POST
//! (`Sec-Fetch-Site: cross-site`, or an `Origin` other than the page's host) is refused:
//! CSRF protection without cookies. Requests for tokens that open nothing are counted per
//! source address (the last `X-Forwarded-For` hop, which API Gateway appends) and a source
//! past [`billing_app::hosted::GUESSES_PER_WINDOW`] an hour is refused with 429. The
//! request log names the route (`/i/{token}`), never the path, so tokens are not logged;
//! `Referrer-Policy: no-referrer` keeps the URL from leaving with a link or Stripe.js.

pub mod page;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use billing_app::{App, AppError};
use billing_domain::hosted::link;
use billing_domain::kernel::error::ErrorCode;
use serde::Deserialize;

use crate::extract::body_bytes;

pub const PAGE_PATH: &str = "/i/{token}";
pub const PAY_PATH: &str = "/i/{token}/pay";
pub const AUTHENTICATE_PATH: &str = "/i/{token}/authenticate";
pub const PDF_PATH: &str = "/i/{token}/pdf";
pub const LOGO_PATH: &str = "/i/{token}/logo";

/// A form is a few short fields.
const MAX_FORM_BYTES: usize = 4 * 1024;

pub fn router() -> Router<App> {
    Router::new()
        .route(PAGE_PATH, get(show))
        .route(PAY_PATH, post(pay))
        .route(AUTHENTICATE_PATH, post(authenticate))
        .route(PDF_PATH, get(pdf))
        .route(LOGO_PATH, get(logo))
        .route(page::SCRIPT_PATH, get(script))
}

/// Where a request comes from: the hop API Gateway (or the local runner's caller) put last
/// in `X-Forwarded-For`, which a client cannot choose.
fn source(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "direct".into())
}

fn html(status: StatusCode, body: String, stripe: bool, brand: &str) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&page::content_security_policy(stripe, brand)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    secure(headers);
    response
}

fn secure(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(status, page::message(title, text), false, "")
}

/// The invoice's page, with `error` above the pay form.
fn invoice_html(
    status: StatusCode,
    token: &str,
    view: &billing_app::hosted::HostedInvoice,
    error: Option<&str>,
) -> Response {
    html(
        status,
        page::invoice_page(token, view, error),
        page::uses_stripe(view),
        &page::brand_style(view),
    )
}

/// An error of the app as a page: never the internals.
fn failure(err: AppError) -> Response {
    match err {
        AppError::NotFound { .. } => not_found(),
        AppError::Invalid(invalid) => message(
            StatusCode::BAD_REQUEST,
            "Payment not accepted",
            &invalid.message,
        ),
        AppError::Conflict {
            code: ErrorCode::DocumentNotReady,
            ..
        } => message(
            StatusCode::CONFLICT,
            "PDF not ready yet",
            "The PDF of this invoice is being prepared; please try again in a moment.",
        ),
        AppError::Conflict { message: text, .. } => {
            message(StatusCode::CONFLICT, "Not possible now", &text)
        }
        AppError::Unavailable(_) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The service is busy; please try again in a moment.",
        ),
        other => {
            tracing::error!(err = %other, "a hosted page failed");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again later.",
            )
        }
    }
}

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Invoice not found",
        "This link does not open an invoice. It may have been replaced by a newer one; \
         please use the link from your latest email or ask the sender.",
    )
}

/// Refuses a source past its guesses, and a token of the wrong shape (counted too).
async fn admit(app: &App, token: &str, source: &str) -> Result<(), Box<Response>> {
    match app.hosted.refused_source(source).await {
        Ok(None) => {}
        Ok(Some(retry_after)) => {
            let mut response = message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many links that open nothing came from your network; try again later.",
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Err(Box::new(response));
        }
        Err(err) => return Err(Box::new(failure(err))),
    }
    if !link::looks_like_token(token) {
        // Counted as a guess like any other miss; shaped wrong, so answered 400.
        if let Err(err) = app.hosted.record_miss(source).await {
            return Err(Box::new(failure(err)));
        }
        return Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "Not an invoice link",
            "This address is not a link to an invoice.",
        )));
    }
    Ok(())
}

async fn show(State(app): State<App>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let source = source(&headers);
    if let Err(refused) = admit(&app, &token, &source).await {
        return *refused;
    }
    match app.hosted.page(&token, &source).await {
        Ok(view) => invoice_html(StatusCode::OK, &token, &view, None),
        Err(err) => failure(err),
    }
}

async fn pdf(State(app): State<App>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let source = source(&headers);
    if let Err(refused) = admit(&app, &token, &source).await {
        return *refused;
    }
    match app.hosted.pdf(&token, &source).await {
        Ok(download) => {
            let mut response = crate::routes::documents::download_response(download);
            secure(response.headers_mut());
            response
        }
        Err(err) => failure(err),
    }
}

async fn logo(State(app): State<App>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let source = source(&headers);
    if let Err(refused) = admit(&app, &token, &source).await {
        return *refused;
    }
    match app.hosted.logo(&token, &source).await {
        Ok(Some((bytes, content_type))) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&content_type) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            secure(headers);
            response
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => failure(err),
    }
}

#[derive(Deserialize)]
struct PayForm {
    form_token: String,
    version: u64,
    card: String,
}

#[derive(Deserialize)]
struct AuthenticateForm {
    form_token: String,
}

/// A form posted from a page: what proves it came from that page.
trait PageForm: serde::de::DeserializeOwned {
    const PURPOSE: &'static str;
    fn form_token(&self) -> &str;
}

impl PageForm for PayForm {
    const PURPOSE: &'static str = "pay";
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

impl PageForm for AuthenticateForm {
    const PURPOSE: &'static str = "authenticate";
    fn form_token(&self) -> &str {
        &self.form_token
    }
}

/// The form `req` carries for the page of `token`, and where it came from: refused when the
/// source is over its guesses, the form unreadable, or sent from another site.
async fn accept_form<F: PageForm>(
    app: &App,
    token: &str,
    headers: &HeaderMap,
    req: Request,
) -> Result<(F, String), Box<Response>> {
    let source = source(headers);
    admit(app, token, &source).await?;
    let form: F = read_form(req).await?;
    check_form(headers, token, F::PURPOSE, form.form_token())?;
    Ok((form, source))
}

/// Refuses a form sent from another site, or without the token of its page.
fn check_form(
    headers: &HeaderMap,
    token: &str,
    purpose: &str,
    given: &str,
) -> Result<(), Box<Response>> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|origin| *origin != "null")
        .is_some_and(|origin| {
            let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            Some(authority) != host
        });
    if cross_site || foreign_origin || !link::form_token_matches(token, purpose, given) {
        return Err(Box::new(message(
            StatusCode::FORBIDDEN,
            "Form refused",
            ErrorCode::InvalidFormToken.description(),
        )));
    }
    Ok(())
}

async fn read_form<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, Box<Response>> {
    let body = body_bytes(req, MAX_FORM_BYTES).await.map_err(|_| {
        Box::new(message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "The form is too large.",
        ))
    })?;
    serde_urlencoded::from_bytes(&body).map_err(|_| {
        Box::new(message(
            StatusCode::BAD_REQUEST,
            "Form incomplete",
            "The form was not filled in; go back and try again.",
        ))
    })
}

/// Back to the page (post/redirect/get), so a reload does not send the form again.
fn back_to(token: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(&format!("/i/{token}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    secure(response.headers_mut());
    response
}

async fn pay(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let (form, source) = match accept_form::<PayForm>(&app, &token, &headers, req).await {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    // A card number as people type it: with spaces.
    let card: String = form.card.chars().filter(|c| !c.is_whitespace()).collect();
    match app.hosted.pay(&token, &source, form.version, &card).await {
        Ok(_) => back_to(&token),
        // A card the gateway refuses: the page again, with why.
        Err(AppError::Invalid(invalid)) => match app.hosted.page(&token, &source).await {
            Ok(view) => invoice_html(
                StatusCode::BAD_REQUEST,
                &token,
                &view,
                Some(&invalid.message),
            ),
            Err(err) => failure(err),
        },
        Err(err) => failure(err),
    }
}

async fn authenticate(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let (_, source) = match accept_form::<AuthenticateForm>(&app, &token, &headers, req).await {
        Ok(accepted) => accepted,
        Err(refused) => return *refused,
    };
    match app.hosted.complete_action(&token, &source).await {
        Ok(_) => back_to(&token),
        Err(err) => failure(err),
    }
}

async fn script() -> Response {
    let mut response = page::SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
