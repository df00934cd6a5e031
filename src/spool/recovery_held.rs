//! Live messages a checkpoint holds, left undecoded: their envelopes stay
//! in the checkpoint's bytes, and their states in one list sorted by
//! place, so that a restart at a large backlog builds each core's compact
//! queue entries from them without a string per message (issue 13). See
//! [`Recovered::held`](super::Recovered::held) and [`HeldMessages::into_live`]
//! for the same messages as a full scan returns them.

use std::collections::BTreeMap;

use super::checkpoint::{EnvelopeBytes, StateContent};
use super::envelope_view::EnvelopeView;
use super::ids::SpoolRef;
use super::payload::{decode_message, RecipientState};
use super::recovery::LiveMessage;

/// Which recipients of a message are not final yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveRecipients {
    All,
    /// By index, ascending.
    Only(Box<[u16]>),
}

impl LiveRecipients {
    /// From `count` recipients, those `is_final` does not say are final.
    pub(super) fn of(count: u16, is_final: impl Fn(u16) -> bool) -> LiveRecipients {
        if (0..count).all(|i| !is_final(i)) {
            return LiveRecipients::All;
        }
        LiveRecipients::Only((0..count).filter(|&i| !is_final(i)).collect())
    }

    pub fn contains(&self, index: u16) -> bool {
        match self {
            LiveRecipients::All => true,
            LiveRecipients::Only(v) => v.binary_search(&index).is_ok(),
        }
    }
}

/// A live message whose envelope a checkpoint holds (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMessage {
    pub at: SpoolRef,
    /// Length of the body its record holds.
    pub body_len: u64,
    pub live: LiveRecipients,
    /// Its envelope: `len` bytes at `start` of its directory's envelope
    /// bytes.
    start: usize,
    len: u32,
}

/// The latest state of a recipient not yet final (what it says shares
/// its last error: a destination that is down gives most of them the
/// same one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveState {
    pub target: SpoolRef,
    pub recipient: u16,
    pub seq: u64,
    pub content: StateContent,
}

impl LiveState {
    pub(super) fn into_state(self) -> RecipientState {
        let LiveState { target, recipient, seq, content: c } = self;
        RecipientState {
            target,
            recipient,
            seq,
            attempts: c.attempts,
            next_attempt_ms: c.next_attempt_ms,
            warned: c.warned,
            held: c.held,
            last_error: c.last_error.to_string(),
        }
    }
}

/// Live messages held by checkpoints, undecoded (see the module docs).
#[derive(Debug, Default)]
pub struct HeldMessages {
    /// In (dir, segment, offset) order.
    pub messages: Vec<HeldMessage>,
    /// The latest states of their live recipients, in (target, recipient)
    /// order.
    pub states: Vec<LiveState>,
    /// Per directory, the envelope bytes of its checkpoint.
    envelopes: BTreeMap<u16, EnvelopeBytes>,
}

impl HeldMessages {
    pub(super) fn new(
        messages: Vec<HeldMessage>,
        states: Vec<LiveState>,
        envelopes: BTreeMap<u16, EnvelopeBytes>,
    ) -> HeldMessages {
        HeldMessages { messages, states, envelopes }
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The envelope of `m` (checked when it was held: None only for a
    /// message of another `HeldMessages`).
    pub fn envelope(&self, m: &HeldMessage) -> Option<EnvelopeView<'_>> {
        let bytes = self.envelopes.get(&m.at.dir)?.get(m.start..m.start + m.len as usize)?;
        EnvelopeView::parse(bytes)
    }

    /// Each message with its states (a slice of `states`), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeldMessage, &[LiveState])> {
        let mut rest = &self.states[..];
        self.messages.iter().map(move |m| {
            // States of targets before `m` belong to no held message.
            let skip = rest.partition_point(|s| s.target < m.at);
            rest = &rest[skip..];
            let n = rest.partition_point(|s| s.target == m.at);
            let (mine, after) = rest.split_at(n);
            rest = after;
            (m, mine)
        })
    }

    /// The same messages as a full scan returns them: decoded, with their
    /// live recipients and states.
    pub fn into_live(self) -> Vec<LiveMessage> {
        let mut out = Vec::with_capacity(self.messages.len());
        for (m, states) in self.iter() {
            let Some(bytes) = self.envelopes.get(&m.at.dir).and_then(|e| e.get(m.start..m.start + m.len as usize))
            else {
                continue;
            };
            // Parsed when held: it decodes.
            let Ok(record) = decode_message(bytes) else { continue };
            out.push(LiveMessage {
                at: m.at,
                queue_id: record.queue_id,
                received_at_ms: record.received_at_ms,
                sender: record.sender,
                client: record.client,
                helo: record.helo,
                body_len: m.body_len,
                recipients: (0u16..).zip(record.recipients).filter(|(i, _)| m.live.contains(*i)).collect(),
                states: states.iter().map(|s| (s.recipient, s.clone().into_state())).collect(),
            });
        }
        out
    }
}

/// A held message whose envelope is `bytes` at `start` of its
/// checkpoint's envelope bytes, if it parses as an [`EnvelopeView`] (else
/// the caller decodes it whole).
pub(super) fn held_message(
    at: SpoolRef,
    body_len: u64,
    start: usize,
    bytes: &[u8],
    live: impl FnOnce(u16) -> LiveRecipients,
) -> Option<(HeldMessage, EnvelopeView<'_>)> {
    let view = EnvelopeView::parse(bytes)?;
    let len = u32::try_from(bytes.len()).ok()?;
    Some((HeldMessage { at, body_len, live: live(view.count()), start, len }, view))
}
