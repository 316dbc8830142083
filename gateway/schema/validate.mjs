// Validate gateway/*.yaml against Envoy Gateway's and the Gateway API's
// schemas, unknown fields included.
//
//   node gateway/schema/validate.mjs <node_modules dir>  < objects.json
//
// stdin: a JSON array of objects (YAML documents, parsed by the caller).
// stdout: a JSON array, one entry per object:
//   {"kind": ..., "apiVersion": ..., "name": ..., "errors": [..]}   ([] = valid)
// Exit status 0 when every object is valid, 1 otherwise, 2 on usage errors.
//
// Three checks per object:
//
// 1. The published schema of its kind (gateway/schema/package.json):
//    @kubernetes-models/gateway-api for gateway.networking.k8s.io,
//    @kubernetes-models/envoy-gateway for gateway.envoyproxy.io. Both are
//    ajv code generated from the projects' Go API types: types, enums,
//    patterns, required fields and bounds; no CEL rules, and, like the API
//    server's schemas, no rejection of unknown fields.
// 2. Unknown fields: a key the published validator does not look up
//    (tests/schema/unknown-fields.mjs), "<JSON pointer> is not a field of
//    <Kind>", unless it is one of the fields of additions.json.
// 3. additions.json: the Envoy Gateway v1.9 fields the published package
//    lacks, as closed JSON schemas of our own (checked here with ajv), each
//    of which must still be a key the published validator does not look up.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { message, unknownFieldErrors, validateRecording } from "../../tests/schema/unknown-fields.mjs";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: validate.mjs <node_modules dir> < objects.json");
  process.exit(2);
}
const PACKAGES = {
  "gateway.networking.k8s.io": join(modules, "@kubernetes-models", "gateway-api"),
  "gateway.envoyproxy.io": join(modules, "@kubernetes-models", "envoy-gateway"),
};
const additions = JSON.parse(readFileSync(new URL("./additions.json", import.meta.url), "utf8"));
const { default: Ajv } = await import(pathToFileURL(join(modules, "ajv", "dist", "ajv.js")).href);
const ajv = new Ajv({ allErrors: true, strict: false });
ajv.addSchema({ $id: "additions", definitions: additions.definitions });

const objects = JSON.parse(readFileSync(0, "utf8"));

// JSON pointers (RFC 6901) over plain JSON values.
const unescape = (k) => k.replaceAll("~1", "/").replaceAll("~0", "~");
const parts = (ptr) => ptr.split("/").slice(1).map(unescape);
function get(value, ptr) {
  for (const k of parts(ptr)) {
    if (value === null || typeof value !== "object" || !(k in value)) return undefined;
    value = value[k];
  }
  return value;
}
// Whether the validator looked up the key at `ptr` in its parent.
function lookedUp(root, ptr, looked) {
  const key = parts(ptr).pop();
  return looked.get(get(root, ptr.slice(0, ptr.lastIndexOf("/"))))?.has(key) ?? false;
}

async function publishedModel(obj) {
  const [group, version] = String(obj.apiVersion ?? "").split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version || !/^[A-Za-z]+$/.test(obj.kind ?? "")) return null;
  const mod = await import(pathToFileURL(join(pkg, group, version, `${obj.kind}.js`)).href);
  return mod[obj.kind];
}

const results = [];
for (const obj of objects) {
  const entry = { kind: obj.kind, apiVersion: obj.apiVersion, name: obj.metadata?.name, errors: [] };
  results.push(entry);
  let Model;
  try {
    Model = await publishedModel(obj);
  } catch (e) {
    entry.errors.push(`no schema for ${obj.apiVersion} ${obj.kind}: ${e.message}`);
    continue;
  }
  if (!Model) {
    entry.errors.push(`not a Gateway API or Envoy Gateway resource: ${obj.apiVersion} ${obj.kind}`);
    continue;
  }

  // 1. the published schema, run on a recording view
  const model = new Model(obj);
  const { errors, looked } = validateRecording(model);
  entry.errors.push(...errors);

  // 3. our additions
  const own = additions.fields[`${obj.apiVersion} ${obj.kind}`] ?? {};
  const present = Object.keys(own).filter((ptr) => get(model, ptr) !== undefined);
  for (const ptr of present) {
    const schema = own[ptr].$ref ? { $ref: `additions${own[ptr].$ref}` } : own[ptr];
    const check = ajv.compile(schema);
    if (!check(get(model, ptr))) entry.errors.push(...check.errors.map((err) => message(err, ptr)));
    if (lookedUp(model, ptr, looked)) {
      entry.errors.push(`${ptr} is a field the published schema knows: additions.json must not have it`);
    }
  }

  // 2. unknown fields, outside the additions
  entry.errors.push(...unknownFieldErrors(model, obj.kind, looked, new Set(present)));
}
process.stdout.write(JSON.stringify(results));
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
