// An OAuth 2.0 authorization server issuing DPoP-bound access tokens
// (RFC 9449) for certbound's DPoP interop tests: panva/oidc-provider
// (version pinned in package.json), the DPoP variant of oidc-server.mjs.
//
//   * client_credentials;
//   * features.dPoP: a token request with a valid DPoP proof gets an access
//     token bound to the proof's key; a JWT access token (typ at+jwt,
//     RFC 9068) carries the key's RFC 7638 thumbprint as cnf.jkt (RFC 9449
//     §6.1), an opaque one reports it through introspection (§6.2);
//     clients registered with dpop_bound_access_tokens: true must use DPoP;
//   * RFC 8707 resource indicators: JWT or opaque access tokens per resource;
//   * RFC 7662 introspection and RFC 7009 revocation.
//
// Usage: node dpop-provider.mjs CONFIG.json
//
// CONFIG.json has the members of oidc-server.mjs's (issuer, host, port,
// keys_file, clients, resources, introspectors) and optionally:
//   dpop              {"algs": [...]         proof algorithms accepted
//                                            (default ES256, PS256, EdDSA),
//                      "require_nonce": bool  token requests need a server
//                                            nonce (default false),
//                      "nonce_secret": "..." base64url of 32 bytes (default:
//                                            random per start)}
//
// Once listening it prints one line to stdout:  listening <port>
// Errors and oidc-provider events go to stderr.

import * as crypto from 'node:crypto';

import { makeProvider, readConfig, serve } from './provider-common.mjs';

const cfg = readConfig('dpop-provider.mjs');
const dpop = cfg.dpop || {};

function nonceSecret() {
  if (!dpop.nonce_secret) return crypto.randomBytes(32);
  const secret = Buffer.from(dpop.nonce_secret, 'base64url');
  if (secret.length !== 32) {
    process.stderr.write('dpop.nonce_secret must be base64url of 32 bytes\n');
    process.exit(2);
  }
  return secret;
}

// --- provider --------------------------------------------------------------

const requireNonce = dpop.require_nonce === true;

const provider = makeProvider(cfg, {
  enabledJWA: {
    dPoPSigningAlgValues: dpop.algs || ['ES256', 'PS256', 'EdDSA'],
  },
  features: {
    dPoP: {
      enabled: true,
      nonceSecret: nonceSecret(),
      requireNonce: () => requireNonce,
      // Proof replay detection at the token endpoint.
      allowReplay: false,
    },
  },
});
serve(provider, cfg, (ctx) => `jkt=${ctx.oidc.entities?.ClientCredentials?.jkt || '-'}`);
