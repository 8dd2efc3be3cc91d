//! The local stand-in for customer email: every notification becomes a readable text file
//! in a directory (`.local/mail/` under `make dev`), named by its notice key, so a notice
//! sent twice is one file.

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

    /// The file a notification is written to.
    fn path_of(&self, notification: &Notification) -> PathBuf {
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
        self.dir.join(format!("{name}.txt"))
    }
}

#[async_trait]
impl Notifier for Mailbox {
    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let text = format!(
            "To: {}\nSubject: {}\nX-Billing-Notice-Key: {}\nTenant: {}\nAccount: {}\n\n{}",
            n.to, n.subject, n.key, n.tenant_id, n.account_id, n.body
        );
        let path = self.path_of(n);
        // A small local file: writing it in place is simpler than a blocking pool.
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| NotifyError::Unavailable(format!("{}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), to = %n.to, subject = %n.subject, "customer notice written");
        Ok(())
    }
}
