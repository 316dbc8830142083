//! The key sets in force: one slot per provider of the policy.

use std::sync::Arc;

use crate::jose::jwk::KeySet;
use crate::policy::{JwksSource, Policy, ProviderId};

/// The key sets in force in one VM, one slot per provider, with a
/// generation that changes whenever a slot's keys are replaced (so cached
/// verifications made with older keys stop counting).
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    slots: Vec<KeySlot>,
}

#[derive(Debug, Clone, Default)]
struct KeySlot {
    keys: Option<Arc<KeySet>>,
    generation: u64,
}

impl KeyRing {
    /// Local key sets are in force at once; remote ones once fetched.
    pub fn for_policy(policy: &Policy) -> KeyRing {
        KeyRing {
            slots: policy
                .providers
                .iter()
                .map(|p| KeySlot {
                    keys: match &p.jwks {
                        JwksSource::Local { keys, .. } => Some(Arc::clone(keys)),
                        JwksSource::Remote(_) | JwksSource::None => None,
                    },
                    generation: 0,
                })
                .collect(),
        }
    }

    pub fn get(&self, provider: ProviderId) -> Option<&Arc<KeySet>> {
        self.slots
            .get(provider.index())
            .and_then(|s| s.keys.as_ref())
    }

    pub fn generation(&self, provider: ProviderId) -> u64 {
        self.slots.get(provider.index()).map_or(0, |s| s.generation)
    }

    /// Replaces a provider's keys; `generation` identifies the new set.
    pub fn install(&mut self, provider: ProviderId, keys: Arc<KeySet>, generation: u64) {
        if let Some(slot) = self.slots.get_mut(provider.index()) {
            slot.keys = Some(keys);
            slot.generation = generation;
        }
    }
}
