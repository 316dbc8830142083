//! Opaque tokens: asking a provider's introspection endpoint (RFC 7662)
//! on behalf of a paused request, and deciding again with the answer.

use std::time::Duration;

use crate::decide::Decision;
use crate::decide::cache::token_digest;
use crate::decide::introspect;
use crate::error::AuthError;
use crate::host::Host;
use crate::host::runtime::{PendingIntrospection, Step, Vm, now_ms};
use crate::policy::ProviderId;

impl Vm {
    /// Asks `provider`'s introspection endpoint about `token` on behalf of
    /// the current stream (RFC 7662 §2.1, client_secret_basic).
    pub(super) fn introspect(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        provider: ProviderId,
        token: &str,
    ) -> bool {
        let Some(cfg) = self.policy.provider(provider).introspection.as_ref() else {
            return false;
        };
        let auth = introspect::basic_auth(&cfg.client_id, &cfg.client_secret);
        let headers = introspect::request_headers(cfg, &auth);
        let body = introspect::request_body(token);
        match host.dispatch_http_call(
            &cfg.cluster,
            &headers,
            Some(body.as_bytes()),
            Duration::from_millis(cfg.timeout_ms),
        ) {
            Some(call) => {
                self.introspections.insert(
                    call,
                    PendingIntrospection {
                        context_id,
                        provider,
                        digest: token_digest(token),
                    },
                );
                true
            }
            None => false,
        }
    }

    /// The introspection endpoint answered (or failed) for the current stream.
    pub fn on_introspection_response(&mut self, host: &dyn Host, call: u32, body_size: usize) {
        let Some(pending) = self.introspections.remove(&call) else {
            return;
        };
        let now = now_ms(host).map_or(0, |ms| i64::try_from(ms / 1000).unwrap_or(i64::MAX));
        let (status, body) = host.http_call_response(body_size);
        match introspect::parse_response(status.as_deref(), body.as_deref()) {
            Some(result) => {
                let duration = self
                    .policy
                    .provider(pending.provider)
                    .introspection
                    .as_ref()
                    .map_or(0, |i| i.cache_duration_s);
                self.introspection
                    .insert(pending.digest, pending.provider, result, duration, now);
                if self.process(host, pending.context_id, false) == Step::Continue {
                    host.resume_request();
                }
            }
            None => {
                self.held.insert(pending.context_id);
                let name = self.provider_name(pending.provider);
                host.log(
                    log::Level::Warn,
                    &format!(
                        "certbound: provider \"{name}\": introspection failed (status {})",
                        status.as_deref().unwrap_or("none")
                    ),
                );
                let headers = host.request_headers();
                let failed = Decision::Deny {
                    error: AuthError::IntrospectionFailed,
                    provider: Some(pending.provider),
                };
                self.apply(host, pending.context_id, &headers, failed, now);
            }
        }
    }
}
