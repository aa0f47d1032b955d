//! The message log as it travels between instances: one [`LogBatch`] per commit.
//!
//! Message ids are the log's positions. A batch says which stretch of the log it covers,
//! `(prev, last]`: every message with an id in that range is in the batch, and `prev` is the
//! `last` of the batch committed just before it (by any instance). Whoever receives batches can
//! therefore tell a batch that follows on from one that skipped something, and read what was
//! skipped from the database (see [`super::sequencer`]).

use std::sync::Arc;

use crate::chat::{MessageKind, MessageView};
use crate::ws::FrameText;
use crate::ws::hub::ConnId;
use crate::ws::protocol::ServerFrame;

/// One stored message, with its frame already serialised (once, by the instance that stored it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i64,
    pub sender_id: i64,
    /// Everyone it goes to: the conversation's members who see it, the sender among them.
    /// Shared by the entries of one conversation in a batch.
    pub recipients: Arc<[i64]>,
    /// The sender's connection that sent it: it gets an ack, not a copy (0: none).
    pub except: ConnId,
    pub frame: FrameText,
}

impl LogEntry {
    /// Appends the entries of a stored event to `entries`, each frame serialised here, once:
    /// one `message` to every recipient, or for a read, the reader's `read_state` and (in a
    /// direct conversation) the other member's `read_receipt` as two entries of the same id.
    /// (Appended, not returned: a message costs no allocation of its own here.)
    pub fn append_event(
        entries: &mut Vec<Self>,
        message: MessageView,
        sender_id: i64,
        recipients: Arc<[i64]>,
        except: ConnId,
    ) {
        let id = message.id;
        let entry = |recipients: Arc<[i64]>, for_reader: bool, message: MessageView| Self {
            id,
            sender_id,
            recipients,
            except,
            frame: ServerFrame::of_event(message, for_reader).to_text(),
        };
        if !message.kind.is_read() {
            entries.push(entry(recipients, false, message));
            return;
        }
        // A read in a group is the reader's own business.
        let others: Vec<i64> = recipients
            .iter()
            .copied()
            .filter(|&r| r != sender_id && message.kind == MessageKind::Read)
            .collect();
        entries.push(entry(Arc::from([sender_id]), true, message.clone()));
        if !others.is_empty() {
            entries.push(entry(Arc::from(others), false, message));
        }
    }
}

/// Every message with an id in `(prev, last]`, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub prev: i64,
    pub last: i64,
    pub entries: Vec<LogEntry>,
}

impl LogBatch {
    /// A stretch of the log with nothing for anyone (ids skipped by a rolled-back insert).
    #[cfg(test)]
    pub fn empty(prev: i64, last: i64) -> Self {
        Self {
            prev,
            last,
            entries: Vec::new(),
        }
    }

    /// Drops the entries at or below `position` (already delivered): the batch then starts there.
    pub fn trim_to(&mut self, position: i64) {
        if self.prev < position {
            self.entries.retain(|entry| entry.id > position);
            self.prev = position;
        }
    }
}

const BATCH_HEADER: usize = 4 + 8 + 8 + 4;
const ENTRY_HEADER: usize = 8 + 8 + 4 + 8 + 4;

/// The binary form published on the log channel: the publishing instance, then the batch.
pub fn encode(origin: u32, batch: &LogBatch) -> Vec<u8> {
    let size = BATCH_HEADER
        + batch
            .entries
            .iter()
            .map(|e| ENTRY_HEADER + 8 * e.recipients.len() + e.frame.len())
            .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&origin.to_be_bytes());
    bytes.extend_from_slice(&batch.prev.to_be_bytes());
    bytes.extend_from_slice(&batch.last.to_be_bytes());
    bytes.extend_from_slice(
        &u32::try_from(batch.entries.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for entry in &batch.entries {
        bytes.extend_from_slice(&entry.id.to_be_bytes());
        bytes.extend_from_slice(&entry.sender_id.to_be_bytes());
        bytes.extend_from_slice(
            &u32::try_from(entry.recipients.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for recipient in entry.recipients.iter() {
            bytes.extend_from_slice(&recipient.to_be_bytes());
        }
        bytes.extend_from_slice(&entry.except.to_be_bytes());
        let text = entry.frame.as_bytes();
        bytes.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
        bytes.extend_from_slice(text);
    }
    bytes
}

/// Reads what [`encode`] wrote; `None` for anything else.
pub fn decode(bytes: &[u8]) -> Option<(u32, LogBatch)> {
    let mut reader = Reader { bytes };
    let origin = u32::from_be_bytes(reader.take()?);
    let prev = i64::from_be_bytes(reader.take()?);
    let last = i64::from_be_bytes(reader.take()?);
    let count = u32::from_be_bytes(reader.take()?);
    // Every entry takes at least its header: a corrupt count cannot reserve unbounded memory.
    let mut entries = Vec::with_capacity((count as usize).min(bytes.len() / ENTRY_HEADER));
    for _ in 0..count {
        let id = i64::from_be_bytes(reader.take()?);
        let sender_id = i64::from_be_bytes(reader.take()?);
        let recipient_count = u32::from_be_bytes(reader.take()?) as usize;
        if recipient_count > reader.bytes.len() / 8 {
            return None;
        }
        let recipients = (0..recipient_count)
            .map(|_| reader.take().map(i64::from_be_bytes))
            .collect::<Option<Arc<[i64]>>>()?;
        let except = u64::from_be_bytes(reader.take()?);
        let len = u32::from_be_bytes(reader.take()?) as usize;
        let text = std::str::from_utf8(reader.slice(len)?).ok()?;
        entries.push(LogEntry {
            id,
            sender_id,
            recipients,
            except,
            frame: FrameText::from(text.to_owned()),
        });
    }
    reader.bytes.is_empty().then_some((
        origin,
        LogBatch {
            prev,
            last,
            entries,
        },
    ))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn slice(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.slice(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64) -> LogEntry {
        LogEntry {
            id,
            sender_id: 1,
            recipients: Arc::from([1, 2, 3]),
            except: if id % 2 == 0 { 0 } else { 1 << 40 },
            frame: FrameText::from(format!(r#"{{"type":"message","id":{id},"body":"é👋"}}"#)),
        }
    }

    #[test]
    fn batches_round_trip() {
        let batch = LogBatch {
            prev: 40,
            last: 44,
            entries: vec![entry(41), entry(43), entry(44)],
        };
        assert_eq!(decode(&encode(7, &batch)), Some((7, batch)));
        let empty = LogBatch::empty(1, 9);
        assert_eq!(decode(&encode(3, &empty)), Some((3, empty)));
    }

    #[test]
    fn truncated_or_padded_bytes_are_refused() {
        let bytes = encode(7, &LogBatch::empty(0, 1));
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode(&padded).is_none());
        let mut huge_count = bytes;
        huge_count[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge_count).is_none());
    }

    #[test]
    fn trimming_drops_what_was_delivered() {
        let mut batch = LogBatch {
            prev: 40,
            last: 44,
            entries: vec![entry(41), entry(43), entry(44)],
        };
        batch.trim_to(43);
        assert_eq!(batch.prev, 43);
        assert_eq!(batch.entries.iter().map(|e| e.id).collect::<Vec<_>>(), [44]);
        batch.trim_to(10);
        assert_eq!(batch.prev, 43, "trimming below the start changes nothing");
    }
}
