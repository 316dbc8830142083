// What oidc-server.mjs and dpop-provider.mjs share: the CONFIG.json they
// read, their signing keys, the oidc-provider features both turn on, and how
// they log and listen. CONFIG.json's members are described in
// oidc-server.mjs.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import Provider from 'oidc-provider';

// CONFIG.json, named by the first argument.
export function readConfig(script) {
  const configPath = process.argv[2];
  if (!configPath) {
    process.stderr.write(`usage: node ${script} CONFIG.json\n`);
    process.exit(2);
  }
  return JSON.parse(fs.readFileSync(configPath, 'utf8'));
}

// The private signing JWKS in `file`, created (one P-256 key) when missing,
// so a restarted server keeps its keys.
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

// An oidc-provider behind a proxy (it believes X-Forwarded-Proto/-Host: the
// links in discovery, and the htu a DPoP proof must name) with
// client_credentials, introspection, revocation and resource indicators as
// `cfg` says, plus the `features` and other `options` given.
export function makeProvider(cfg, { features = {}, ...options } = {}) {
  const resources = cfg.resources || {};
  const introspectors = new Set(cfg.introspectors || []);
  const provider = new Provider(cfg.issuer, {
    clients: cfg.clients,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    jwks: loadOrCreateKeys(cfg.keys_file),
    clientDefaults: {
      id_token_signed_response_alg: 'ES256',
    },
    ...options,
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
      ...features,
    },
  });
  provider.proxy = true;
  return provider;
}

// Logs errors and each grant (`grant(ctx)` says what it was bound to) to
// stderr, listens where `cfg` says, prints `listening <port>` to stdout, and
// stops on SIGTERM or SIGINT.
export function serve(provider, cfg, grant) {
  for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error']) {
    provider.on(event, (ctx, err) => {
      process.stderr.write(`oidc-provider ${event}: ${err?.name}: ${err?.message}`
        + `${err?.error_description ? ` (${err.error_description})` : ''}\n`);
    });
  }
  provider.on('grant.success', (ctx) => {
    process.stderr.write(`oidc-provider grant.success client=${ctx.oidc.client?.clientId} ${grant(ctx)}\n`);
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
}
