//! Where the arrival-order queue lives in a lock file: the byte offsets of
//! its gate, tickets and markers (protocol in `queue.rs`). Only numbers, so
//! that the queue, the obstruction check and the place stamp can all agree
//! on the layout without depending on each other.

/// The gate's byte.
pub(crate) const GATE: u64 = 0;
/// Ticket t is the byte at `TICKET_BASE + t`.
pub(crate) const TICKET_BASE: u64 = 1 << 40;
/// The exclusive marker of ticket t is the byte at `MARK_BASE + t`.
pub(crate) const MARK_BASE: u64 = 1 << 41;
/// Tickets run from 1 to `SPAN - 1`.
pub(crate) const SPAN: u64 = 1 << 40;
/// The place marker of ticket t (a request for one of N places) is the
/// byte at `PLACE_MARK_BASE + t`, just past the exclusive markers.
pub(crate) const PLACE_MARK_BASE: u64 = MARK_BASE + SPAN;
/// The last byte the queue uses.
pub(crate) const LAST: u64 = PLACE_MARK_BASE + SPAN - 1;
