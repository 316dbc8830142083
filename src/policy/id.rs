//! Providers are referred to by [`ProviderId`]: an index into the
//! [`Policy`](crate::policy::Policy) that made it.

/// A provider of one [`Policy`](crate::policy::Policy). Ids are made only
/// while that policy is validated, and everything that holds one (caches,
/// key rings, pending requests) lives and dies with that policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(u32);

impl ProviderId {
    pub(crate) fn new(index: usize) -> ProviderId {
        ProviderId(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The provider's position in `Policy::providers`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
