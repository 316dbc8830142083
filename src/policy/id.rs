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

impl crate::policy::Policy {
    /// The provider `id` names. Infallible: ids come from this policy.
    #[allow(clippy::indexing_slicing)] // ids are made only for this policy's providers
    pub fn provider(&self, id: ProviderId) -> &crate::policy::Provider {
        &self.providers[id.index()]
    }

    /// The id of the provider named `name` in the configuration.
    pub fn provider_id(&self, name: &str) -> Option<ProviderId> {
        self.each_provider()
            .find(|(_, p)| p.name == name)
            .map(|(id, _)| id)
    }

    /// Every provider, with its id, in configuration order.
    pub fn each_provider(&self) -> impl Iterator<Item = (ProviderId, &crate::policy::Provider)> {
        self.providers
            .iter()
            .enumerate()
            .map(|(i, p)| (ProviderId::new(i), p))
    }
}
