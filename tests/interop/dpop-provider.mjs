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
import * as fs from 'node:fs';

import Provider from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: node dpop-provider.mjs CONFIG.json\n');
  process.exit(2);
}
const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const dpop = cfg.dpop || {};

// --- signing keys: stable across restarts ---------------------------------

function loadOrCreateKeys(file) {
  if (fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  }
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = crypto.createHash('sha256').update(jwk.x + jwk.y).digest('base64url').slice(0, 16);
  const jwks = { keys: [{ ...jwk, kid, alg: 'ES256', use: 'sig' }] };
  fs.writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

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

const resources = cfg.resources || {};
const introspectors = new Set(cfg.introspectors || []);
const requireNonce = dpop.require_nonce === true;

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  jwks: loadOrCreateKeys(cfg.keys_file),
  clientDefaults: {
    id_token_signed_response_alg: 'ES256',
  },
  enabledJWA: {
    dPoPSigningAlgValues: dpop.algs || ['ES256', 'PS256', 'EdDSA'],
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The resource server (certbound) may introspect every client's
      // tokens; a client only its own.
      allowedPolicy(ctx, client, token) {
        return introspectors.has(client.clientId) || client.clientId === token.clientId;
      },
    },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      nonceSecret: nonceSecret(),
      requireNonce: () => requireNonce,
      // Proof replay detection at the token endpoint.
      allowReplay: false,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => false,
      getResourceServerInfo(ctx, resourceIndicator) {
        const rs = resources[resourceIndicator];
        if (!rs) throw new Provider.errors.InvalidTarget();
        return {
          audience: resourceIndicator,
          scope: rs.scope,
          accessTokenTTL: rs.ttl || 300,
          accessTokenFormat: rs.format,
          ...(rs.format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
        };
      },
    },
  },
});
// Behind a proxy: believe X-Forwarded-Proto/-Host (links in discovery, and
// the htu a token request's proof must name).
provider.proxy = true;

for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, err) => {
    process.stderr.write(`oidc-provider ${event}: ${err?.name}: ${err?.message}`
      + `${err?.error_description ? ` (${err.error_description})` : ''}\n`);
  });
}
provider.on('grant.success', (ctx) => {
  const jkt = ctx.oidc.entities?.ClientCredentials?.jkt;
  process.stderr.write(`oidc-provider grant.success client=${ctx.oidc.client?.clientId}`
    + ` jkt=${jkt || '-'}\n`);
});

const server = provider.listen(cfg.port || 0, cfg.host || '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
server.on('error', (err) => {
  process.stderr.write(`listen failed: ${err.message}\n`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
