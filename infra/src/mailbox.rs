//! The local stand-in for customer email: every notification becomes two files in a
//! directory (`.local/mail/` under `make dev`), named by its notice key (so a notice sent
//! twice is one pair): `{key}.txt`, its headers and plain-text part, and `{key}.html`, its
//! HTML part, which opens in a browser as the customer would see it.

use std::path::PathBuf;

use async_trait::async_trait;
use billing_app::ports::{Notification, Notifier, NotifyError};

pub struct Mailbox {
    dir: PathBuf,
}

impl Mailbox {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file a notification's part is written to (`extension`: `txt` or `html`).
    fn path_of(&self, notification: &Notification, extension: &str) -> PathBuf {
        let name: String = notification
            .key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{name}.{extension}"))
    }
}

#[async_trait]
impl Notifier for Mailbox {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let text = format!(
            "To: {}\nReply-To: {}\nSubject: {}\nX-Billing-Notice-Key: {}\nTenant: {}\nAccount: {}\n\n{}",
            n.to,
            n.reply_to.as_deref().unwrap_or(""),
            n.subject,
            n.key,
            n.tenant_id,
            n.account_id,
            n.body
        );
        let path = self.path_of(n, "txt");
        let html = self.path_of(n, "html");
        // Small local files: writing them in place is simpler than a blocking pool. The
        // HTML part first, so a text file present means the pair is complete.
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&html, &n.html))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| NotifyError::Unavailable(format!("{}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), to = %n.to, subject = %n.subject, "customer notice written");
        Ok(())
    }
}
