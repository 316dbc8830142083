// A DPoP client (RFC 9449) for certbound's interop tests, on panva's
// oauth4webapi (version pinned in package.json): it obtains a DPoP-bound
// access token with the client_credentials grant and calls a protected
// resource with it, each request carrying a fresh proof; it answers a
// use_dpop_nonce challenge (token endpoint or resource) by retrying once
// with the server's DPoP-Nonce.
//
// Usage: node dpop-client.mjs MODE [URL] --issuer URL --client-id ID
//            --client-secret SECRET [options]
//
// Modes (each prints one JSON object to stdout):
//   token        obtain a token: {token_type, access_token, expires_in,
//                scope, jkt, claims (a JWT token's payload, else null),
//                bound (claims.cnf.jkt equals jkt)}
//   call URL     call URL with the token and a proof: {status,
//                www_authenticate, dpop_nonce, body, attempts, jkt}
//   proof URL    make a proof for URL without sending it, for replay tests:
//                {access_token, jkt, proof, method, htu}
//
// Options:
//   --resource R        RFC 8707 resource indicator of the token request
//   --scope S           scope of the token request
//   --alg A             proof algorithm: ES256 (default), PS256 or EdDSA
//   --key-file F        the client's DPoP key pair as JWKs: read if it
//                       exists, else made and written, so separate runs
//                       prove possession of the same key
//   --token T           use this access token instead of requesting one
//                       (with the --key-file it is bound to)
//   --method M          request method for call and proof (default GET)
//   --nonce N           the nonce a proof made by `proof` carries
//   --header 'N: V'     an extra request header for call (repeatable)
//
// http:// URLs are allowed (loopback tests). Errors go to stderr, exit 1.

import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

import * as oauth from 'oauth4webapi';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    resource: { type: 'string' },
    scope: { type: 'string' },
    alg: { type: 'string', default: 'ES256' },
    'key-file': { type: 'string' },
    token: { type: 'string' },
    method: { type: 'string', default: 'GET' },
    nonce: { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
  },
});

function fail(message) {
  process.stderr.write(`dpop-client: ${message}\n`);
  process.exit(1);
}

const [mode, target] = positionals;
if (!['token', 'call', 'proof'].includes(mode)) {
  fail('usage: node dpop-client.mjs token|call URL|proof URL --issuer URL '
    + '--client-id ID --client-secret SECRET [options]');
}
if (mode !== 'token' && !target) fail(`${mode} needs a URL`);
if (!opts.token && (!opts.issuer || !opts['client-id'] || !opts['client-secret'])) {
  fail('--issuer, --client-id and --client-secret are needed to obtain a token');
}

// --- the DPoP key pair ------------------------------------------------------

// WebCrypto parameters of each proof algorithm. EdDSA proofs use an
// Ed25519 key; oauth4webapi names that algorithm "Ed25519" (RFC 9864),
// which oidc-provider 8 does not know, so the header says "EdDSA".
const ALGS = {
  ES256: { generate: 'ES256', subtle: { name: 'ECDSA', namedCurve: 'P-256' } },
  PS256: { generate: 'PS256', subtle: { name: 'RSA-PSS', hash: 'SHA-256' } },
  EdDSA: { generate: 'Ed25519', subtle: { name: 'Ed25519' } },
};

async function keyPair(alg) {
  const spec = ALGS[alg];
  if (!spec) fail(`unsupported --alg ${alg}`);
  const file = opts['key-file'];
  if (file && fs.existsSync(file)) {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (saved.alg !== alg) fail(`${file} holds a ${saved.alg} key, not ${alg}`);
    return {
      privateKey: await crypto.subtle.importKey('jwk', saved.private, spec.subtle, false, ['sign']),
      publicKey: await crypto.subtle.importKey('jwk', saved.public, spec.subtle, true, ['verify']),
    };
  }
  const pair = await oauth.generateKeyPair(spec.generate, { extractable: true });
  if (file) {
    const saved = {
      alg,
      private: await crypto.subtle.exportKey('jwk', pair.privateKey),
      public: await crypto.subtle.exportKey('jwk', pair.publicKey),
    };
    fs.writeFileSync(file, JSON.stringify(saved), { mode: 0o600 });
  }
  return pair;
}

// --- the token --------------------------------------------------------------

function insecure(url) {
  return new URL(url).protocol === 'http:';
}

function jwtClaims(token) {
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

async function obtainToken(client, dpop) {
  const issuer = new URL(opts.issuer);
  const allow = { [oauth.allowInsecureRequests]: insecure(issuer) };
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...allow }),
  );
  const auth = oauth.ClientSecretBasic(opts['client-secret']);
  const parameters = new URLSearchParams();
  if (opts.resource) parameters.set('resource', opts.resource);
  if (opts.scope) parameters.set('scope', opts.scope);
  for (let attempt = 1; ; attempt += 1) {
    const response = await oauth.clientCredentialsGrantRequest(
      as, client, auth, parameters, { DPoP: dpop, ...allow },
    );
    try {
      return await oauth.processClientCredentialsResponse(as, client, response);
    } catch (err) {
      // The nonce came with the error and is cached by the DPoP handle.
      if (attempt === 1 && oauth.isDPoPNonceError(err)) continue;
      throw err;
    }
  }
}

// --- the resource -----------------------------------------------------------

async function readBody(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function call(accessToken, dpop, url) {
  const headers = new Headers();
  for (const h of opts.header) {
    const at = h.indexOf(':');
    if (at < 1) fail(`bad --header ${h}`);
    headers.append(h.slice(0, at).trim(), h.slice(at + 1).trim());
  }
  const options = { DPoP: dpop, [oauth.allowInsecureRequests]: insecure(url) };
  let response;
  let attempts = 0;
  for (;;) {
    attempts += 1;
    try {
      response = await oauth.protectedResourceRequest(
        accessToken, opts.method, url, headers, null, options,
      );
      break;
    } catch (err) {
      if (!(err instanceof oauth.WWWAuthenticateChallengeError)) throw err;
      // The handle cached the DPoP-Nonce of this response: one retry.
      if (attempts === 1 && oauth.isDPoPNonceError(err)) continue;
      response = err.response;
      break;
    }
  }
  return {
    status: response.status,
    www_authenticate: response.headers.get('www-authenticate'),
    dpop_nonce: response.headers.get('dpop-nonce'),
    body: await readBody(response),
    attempts,
  };
}

// --- main -------------------------------------------------------------------

async function main() {
  const alg = opts.alg;
  const client = { client_id: opts['client-id'] || 'unused' };
  const dpop = oauth.DPoP(client, await keyPair(alg), alg === 'EdDSA'
    ? { [oauth.modifyAssertion]: (header) => { header.alg = 'EdDSA'; } }
    : undefined);
  const jkt = await dpop.calculateThumbprint();

  const token = opts.token
    ? { access_token: opts.token, token_type: 'dpop' }
    : await obtainToken(client, dpop);
  const claims = jwtClaims(token.access_token);

  let out;
  if (mode === 'token') {
    out = {
      token_type: token.token_type,
      access_token: token.access_token,
      expires_in: token.expires_in ?? null,
      scope: token.scope ?? null,
      jkt,
      claims,
      bound: claims?.cnf?.jkt === jkt,
    };
  } else if (mode === 'call') {
    out = { ...(await call(token.access_token, dpop, new URL(target))), jkt };
  } else {
    const url = new URL(target);
    if (opts.nonce) {
      dpop.cacheNonce(new Response(null, { headers: { 'dpop-nonce': opts.nonce } }), url);
    }
    const headers = new Headers();
    await dpop.addProof(url, headers, opts.method.toUpperCase(), token.access_token);
    out = {
      access_token: token.access_token,
      jkt,
      proof: headers.get('dpop'),
      method: opts.method.toUpperCase(),
      htu: `${url.origin}${url.pathname}`,
    };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  const detail = err?.error ? ` (${err.error}: ${err.error_description ?? ''})` : '';
  fail(`${err?.name || 'Error'}: ${err?.message}${detail}`);
});
