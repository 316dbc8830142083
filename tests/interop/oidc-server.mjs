// An OAuth 2.0 authorization server for certbound's interop tests:
// panva/oidc-provider (version pinned in package.json) with
//
//   * client_credentials;
//   * RFC 8705 certificate-bound access tokens (features.mTLS), the client
//     certificate taken from Envoy's x-forwarded-client-cert header: this
//     server speaks plain HTTP on loopback behind an Envoy that terminates
//     mTLS and sets XFCC (forward_client_cert_details: SANITIZE_SET,
//     set_current_client_cert_details: {cert: true});
//   * RFC 8707 resource indicators: JWT access tokens (typ at+jwt, RFC 9068)
//     or opaque ones, per resource;
//   * RFC 7662 introspection and RFC 7009 revocation.
//
// Usage: node oidc-server.mjs CONFIG.json
//
// CONFIG.json (written by tests/e2e/interop_support.py):
//   issuer            the `iss` of every token
//   host, port        where to listen (port 0: any free port)
//   keys_file         private signing JWKS; created (one P-256 key) when
//                     missing, so a restarted server keeps its keys
//   clients           oidc-provider client metadata, as registered
//   resources         {"<resource indicator>": {"format": "jwt"|"opaque",
//                      "scope": "...", "ttl": seconds}}
//   introspectors     client_ids allowed to introspect any client's tokens
//
// Once listening it prints one line to stdout:  listening <port>
// Errors and oidc-provider events go to stderr.
//
// Trust boundary: XFCC is believed because only the front Envoy can reach
// this server (it listens on loopback) and that Envoy replaces any XFCC a
// client sent (SANITIZE_SET). Do not expose this port directly.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import Provider from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write('usage: node oidc-server.mjs CONFIG.json\n');
  process.exit(2);
}
const cfg = JSON.parse(fs.readFileSync(configPath, 'utf8'));

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

// --- the client certificate, from Envoy's XFCC ----------------------------

// Splits an XFCC value into elements (',') of key=value pairs (';'),
// honouring double-quoted values (Subject="CN=a,O=b").
function parseXfcc(value) {
  const elements = [];
  let pairs = {};
  let key = '';
  let buf = '';
  let inKey = true;
  let quoted = false;
  const endPair = () => {
    if (key) pairs[key.trim().toLowerCase()] = buf;
    key = '';
    buf = '';
    inKey = true;
  };
  for (let i = 0; i < value.length; i += 1) {
    const c = value[i];
    if (quoted) {
      if (c === '\\' && i + 1 < value.length) {
        buf += value[i + 1];
        i += 1;
      } else if (c === '"') {
        quoted = false;
      } else {
        buf += c;
      }
    } else if (c === '"' && !inKey) {
      quoted = true;
    } else if (c === '=' && inKey) {
      key = buf;
      buf = '';
      inKey = false;
    } else if (c === ';') {
      endPair();
    } else if (c === ',') {
      endPair();
      elements.push(pairs);
      pairs = {};
    } else {
      buf += c;
    }
  }
  endPair();
  elements.push(pairs);
  return elements;
}

// oidc-provider's documented hook for a TLS-terminating proxy: return the
// PEM (here a parsed X509Certificate) of the certificate used on this
// request, or undefined.
function getCertificate(ctx) {
  const header = ctx.get('x-forwarded-client-cert');
  if (!header) return undefined;
  const elements = parseXfcc(header);
  // The last element is the hop nearest to us: the front Envoy's client.
  const cert = elements[elements.length - 1].cert;
  if (!cert) return undefined;
  try {
    return new crypto.X509Certificate(decodeURIComponent(cert));
  } catch {
    return undefined;
  }
}

// --- provider --------------------------------------------------------------

const resources = cfg.resources || {};
const introspectors = new Set(cfg.introspectors || []);

const provider = new Provider(cfg.issuer, {
  clients: cfg.clients,
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  jwks: loadOrCreateKeys(cfg.keys_file),
  clientDefaults: {
    id_token_signed_response_alg: 'ES256',
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
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate,
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
// Behind a proxy: believe X-Forwarded-Proto/-Host (links in discovery).
provider.proxy = true;

for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, err) => {
    process.stderr.write(`oidc-provider ${event}: ${err?.name}: ${err?.message}`
      + `${err?.error_description ? ` (${err.error_description})` : ''}\n`);
  });
}
provider.on('grant.success', (ctx) => {
  const cert = getCertificate(ctx);
  process.stderr.write(`oidc-provider grant.success client=${ctx.oidc.client?.clientId}`
    + ` cert=${cert ? cert.subject.replace(/\n/g, ',') : '-'}\n`);
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
