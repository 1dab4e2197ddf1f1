//! The value functions of a running engine. A *slot* is one value function
//! (one role of one guide set, fed one way) holding the rows of every live
//! request that uses it, grouped by request in the engine's request order, so
//! those requests share one forward per guide model per step.

use ivg_value::{Feed, ValueFunction};

use crate::generate::DecodeError;
use crate::guide_source::ValueRole;

/// Requests are numbered in admission order.
pub type RequestId = u64;

/// A value function owned by the engine or lent by the caller.
pub(crate) enum SlotValue<'a> {
    Borrowed(&'a mut dyn ValueFunction),
    Owned(Box<dyn ValueFunction>),
}

impl SlotValue<'_> {
    pub fn get(&mut self) -> &mut dyn ValueFunction {
        match self {
            Self::Borrowed(v) => &mut **v,
            Self::Owned(v) => v.as_mut(),
        }
    }

    pub fn get_ref(&self) -> &dyn ValueFunction {
        match self {
            Self::Borrowed(v) => &**v,
            Self::Owned(v) => v.as_ref(),
        }
    }
}

pub(crate) struct Slot<'a> {
    pub set: usize,
    pub role: ValueRole,
    /// `None` for a lent value function (its feed is the caller's choice).
    pub feed: Option<Feed>,
    pub value: SlotValue<'a>,
    /// Requests whose rows the value function holds, with their row counts,
    /// in the engine's request order.
    pub members: Vec<(RequestId, usize)>,
}

impl<'a> Slot<'a> {
    pub fn rows(&self) -> usize {
        self.members.iter().map(|m| m.1).sum()
    }

    /// First row of request `id` in this slot and its row count.
    pub fn range(&self, id: RequestId) -> Option<(usize, usize)> {
        let mut offset = 0;
        for &(m, n) in &self.members {
            if m == id {
                return Some((offset, n));
            }
            offset += n;
        }
        None
    }

    /// Whether this slot serves `role` of guide set `set` fed as `feed`.
    pub fn serves(&self, set: usize, role: ValueRole, feed: Feed) -> bool {
        self.set == set && self.role == role && self.feed.is_none_or(|f| f == feed)
    }

    /// Adds one row per prompt for the requests `joining` (in order), then
    /// forks each to its row count.
    pub fn join(&mut self, joining: &[(RequestId, usize, &str)]) -> Result<(), DecodeError> {
        let texts: Vec<String> = joining.iter().map(|j| j.2.to_string()).collect();
        let before = self.rows();
        if before == 0 {
            self.value.get().begin(&texts)?;
        } else {
            self.value.get().append(&texts)?;
        }
        let mut order: Vec<usize> = (0..before).collect();
        for (i, &(id, n, _)) in joining.iter().enumerate() {
            order.extend(std::iter::repeat_n(before + i, n));
            self.members.push((id, n));
        }
        if order.len() != before + joining.len() || order.iter().enumerate().any(|(i, &r)| i != r) {
            self.value.get().reorder(&order)?;
        }
        Ok(())
    }

    /// Applies each member's new local row order (`None`: unchanged, empty:
    /// the request leaves). Members absent from `orders` keep their rows.
    pub fn regroup(
        &mut self,
        orders: &std::collections::HashMap<RequestId, Vec<usize>>,
    ) -> Result<(), DecodeError> {
        if !self.members.iter().any(|m| orders.contains_key(&m.0)) {
            return Ok(());
        }
        let mut order = Vec::new();
        let mut members = Vec::new();
        let mut offset = 0;
        for &(id, n) in &self.members {
            match orders.get(&id) {
                Some(local) => {
                    order.extend(local.iter().map(|&r| offset + r));
                    if !local.is_empty() {
                        members.push((id, local.len()));
                    }
                }
                None => {
                    order.extend(offset..offset + n);
                    members.push((id, n));
                }
            }
            offset += n;
        }
        self.members = members;
        if !order.is_empty() {
            self.value.get().reorder(&order)?;
        }
        Ok(())
    }
}

pub(crate) fn missing(role: ValueRole, set: &str) -> DecodeError {
    DecodeError::Config {
        field: "guides",
        problem: format!(
            "this method needs the {} value function (guide set `{set}`)",
            role.name()
        ),
    }
}
