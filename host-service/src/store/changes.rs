//! Call changes as they are committed, for whatever shows calls live (the dashboard): a broadcast
//! of the CallSids whose row changed, so a reader looks again only when there is something to
//! see. On SQLite this process made every change and publishes it after the commit; on
//! PostgreSQL the writing transaction `NOTIFY`s, and each replica's listener (`listen`) publishes
//! what any replica committed.

use super::{Result, Store};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The PostgreSQL channel of call changes; the payload is the CallSid.
pub const CALLS_CHANNEL: &str = "twiml_guard_calls";
/// Changes a slow subscriber may fall behind before it is told it lagged.
pub(super) const CAPACITY: usize = 1024;
/// Published when changes may have been missed (the listener reconnected): look at everything.
pub const ANY_CALL: &str = "";

impl Store {
    /// The CallSids of calls whose row changes from now on ([`ANY_CALL`]: look at them all).
    pub fn call_changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.calls_changed.subscribe()
    }

    /// `call_sid`'s row changed in `tx`: on PostgreSQL every replica hears it at commit.
    pub(super) async fn call_changed_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        call_sid: &str,
    ) -> Result<()> {
        if self.dialect().shared() {
            notify_call(&mut **tx, call_sid).await?;
        }
        Ok(())
    }

    /// After committing a transaction that called `call_changed_in`.
    pub(super) fn call_committed(&self, call_sid: &str) {
        if !self.dialect().shared() {
            self.publish_call(call_sid);
        }
    }

    /// `call_sid`'s row changed outside a transaction.
    pub(super) async fn call_changed(&self, call_sid: &str) -> Result<()> {
        if self.dialect().shared() {
            notify_call(self.pool(), call_sid).await
        } else {
            self.publish_call(call_sid);
            Ok(())
        }
    }

    pub(super) fn publish_call(&self, call_sid: &str) {
        // No subscriber is no error: nobody is watching.
        let _ = self.calls_changed.send(call_sid.into());
    }
}

async fn notify_call<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    call_sid: &str,
) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CALLS_CHANNEL)
        .bind(call_sid)
        .execute(executor)
        .await?;
    Ok(())
}
