//! Customer notifications by email through SES (API v2 `SendEmail`), from the deployment's
//! verified sender address, as HTML with a plain-text part and the tenant's reply-to
//! address. Each message carries its notice key in an `X-Billing-Notice-Key` header, so a
//! repeat after a crash can be recognised downstream.

use async_trait::async_trait;
use aws_sdk_sesv2::error::SdkError;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, MessageHeader};
use billing_app::ports::{Notification, Notifier, NotifyError};

use crate::config::MissingVar;

/// The header naming the notice a message carries.
pub const NOTICE_KEY_HEADER: &str = "X-Billing-Notice-Key";

#[derive(Clone)]
pub struct SesNotifier {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesNotifier {
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>) -> Self {
        Self {
            client,
            from: from.into(),
        }
    }

    /// The sender address from `NOTICE_FROM_ADDRESS` (an SES-verified identity).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, MissingVar> {
        let from = std::env::var("NOTICE_FROM_ADDRESS")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(MissingVar("NOTICE_FROM_ADDRESS"))?;
        Ok(Self::new(aws_sdk_sesv2::Client::new(sdk), from))
    }
}

fn text(data: &str) -> Result<Content, NotifyError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| NotifyError::Rejected(e.to_string()))
}

/// Throttling, transport faults and the operator's own setup (a paused or suspended
/// account, an unverified sender domain, a missing configuration set) pass or get fixed, so
/// the notice waits; a message SES rejects (a bad recipient) would fail the same way again.
fn classify(err: SdkError<SendEmailError>) -> NotifyError {
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let e = service.err();
            e.is_too_many_requests_exception()
                || e.is_limit_exceeded_exception()
                || e.is_sending_paused_exception()
                || e.is_account_suspended_exception()
                || e.is_mail_from_domain_not_verified_exception()
                || e.is_not_found_exception()
                || service.raw().status().is_server_error()
        }
        _ => false,
    };
    let message = format!("{}", aws_sdk_sesv2::error::DisplayErrorContext(&err));
    if transient {
        NotifyError::Unavailable(message)
    } else {
        NotifyError::Rejected(message)
    }
}

#[async_trait]
impl Notifier for SesNotifier {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let header = MessageHeader::builder()
            .name(NOTICE_KEY_HEADER)
            .value(&n.key)
            .build()
            .map_err(|e| NotifyError::Rejected(e.to_string()))?;
        let message = Message::builder()
            .subject(text(&n.subject)?)
            .body(
                Body::builder()
                    .text(text(&n.body)?)
                    .html(text(&n.html)?)
                    .build(),
            )
            .headers(header)
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&n.to).build())
            .set_reply_to_addresses(n.reply_to.clone().map(|r| vec![r]))
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
