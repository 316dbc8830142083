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

import { makeProvider, readConfig, serve } from './provider-common.mjs';

const cfg = readConfig('oidc-server.mjs');

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

const provider = makeProvider(cfg, {
  features: {
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      getCertificate,
    },
  },
});
serve(provider, cfg, (ctx) => {
  const cert = getCertificate(ctx);
  return `cert=${cert ? cert.subject.replace(/\n/g, ',') : '-'}`;
});
