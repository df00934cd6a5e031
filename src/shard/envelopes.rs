//! Reading queued envelopes back from the spool: the compact queue keeps
//! no sender or recipient address (issue 13 item 3), so a share taken to
//! be sent, bounced or listed has them read from its message record.

use super::Shard;
use crate::queue::Envelopes;
use crate::spool::SpoolRef;

/// [`Envelopes`] from this core's spool maps (any directory's record).
pub struct SpoolEnvelopes<'a>(&'a Shard);

impl Envelopes for SpoolEnvelopes<'_> {
    fn envelope(&self, at: SpoolRef, recipients: &[u16]) -> Option<(String, Vec<String>)> {
        let shard = self.0;
        let Ok(mut maps) = shard.maps.try_borrow_mut() else {
            tracing::error!(at = %at, "queued envelope not read: spool maps busy");
            return None;
        };
        let view = match maps.record(shard.resolve(at)) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(at = %at, error = %e, "cannot read a queued envelope from the spool");
                return None;
            }
        };
        let record = match view.message() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(at = %at, error = %e, "queued message record is undecodable");
                return None;
            }
        };
        let address = |i: u16| record.recipients.get(usize::from(i)).map(|r| r.address.clone()).unwrap_or_default();
        Some((record.sender.clone(), recipients.iter().map(|&i| address(i)).collect()))
    }
}

impl Shard {
    /// Where this core's queue reads envelopes back.
    pub fn envelopes(&self) -> SpoolEnvelopes<'_> {
        SpoolEnvelopes(self)
    }
}
