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
// 2. Unknown fields. A field the schema knows has a type, so the object
//    with that field's value replaced by one of another type fails; a
//    misspelt field takes anything. Every value in the object is replaced
//    in turn: one the published schema does not notice is an error, unless
//    it is under one of the fields of additions.json.
// 3. additions.json: the Envoy Gateway v1.9 fields the published package
//    lacks, as closed JSON schemas of our own (checked here with ajv), each
//    of which must still be unknown to the published schema.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

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
const escape = (k) => String(k).replaceAll("~", "~0").replaceAll("/", "~1");
const unescape = (k) => k.replaceAll("~1", "/").replaceAll("~0", "~");
const parts = (ptr) => ptr.split("/").slice(1).map(unescape);
function get(value, ptr) {
  for (const k of parts(ptr)) {
    if (value === null || typeof value !== "object" || !(k in value)) return undefined;
    value = value[k];
  }
  return value;
}
function replaced(obj, ptr, v) {
  const copy = structuredClone(obj);
  const ks = parts(ptr);
  let node = copy;
  for (const k of ks.slice(0, -1)) node = node[k];
  node[ks[ks.length - 1]] = v;
  return copy;
}
const under = (ptr, parent) => ptr === parent || ptr.startsWith(parent + "/");
const parentOf = (ptr) => ptr.slice(0, ptr.lastIndexOf("/"));

// Every scalar and every empty object or array, as a pointer.
function* leaves(value, ptr = "") {
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length > 0) {
      for (const k of keys) yield* leaves(value[k], `${ptr}/${escape(k)}`);
      return;
    }
  }
  yield ptr;
}
// A value of another type than v's: the schema of a known field rejects it.
const otherType = (v) => (v !== null && typeof v === "object" ? 0 : {});

async function publishedModel(obj) {
  const [group, version] = String(obj.apiVersion ?? "").split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version || !/^[A-Za-z]+$/.test(obj.kind ?? "")) return null;
  const mod = await import(pathToFileURL(join(pkg, group, version, `${obj.kind}.js`)).href);
  return mod[obj.kind];
}

function published(Model, obj) {
  try {
    new Model(obj).validate();
    return [];
  } catch (e) {
    const errs = e.errors ?? [];
    if (!errs.length) return [String(e.message ?? e)];
    return errs.map((err) => `${err.instancePath || "/"} ${err.message}` +
      (err.params?.allowedValues ? `: ${JSON.stringify(err.params.allowedValues)}` : "") +
      (err.params?.additionalProperty ? `: ${err.params.additionalProperty}` : ""));
  }
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

  // 1. the published schema
  entry.errors.push(...published(Model, obj));
  if (entry.errors.length) continue;

  // 3. our additions
  const own = additions.fields[`${obj.apiVersion} ${obj.kind}`] ?? {};
  const present = Object.keys(own).filter((ptr) => get(obj, ptr) !== undefined);
  for (const ptr of present) {
    const schema = own[ptr].$ref ? { $ref: `additions${own[ptr].$ref}` } : own[ptr];
    const check = ajv.compile(schema);
    if (!check(get(obj, ptr))) {
      for (const err of check.errors) {
        entry.errors.push(`${ptr}${err.instancePath} ${err.message}` +
          (err.params?.allowedValues ? `: ${JSON.stringify(err.params.allowedValues)}` : "") +
          (err.params?.additionalProperty ? `: ${err.params.additionalProperty}` : ""));
      }
    }
    if (published(Model, replaced(obj, ptr, otherType(get(obj, ptr)))).length) {
      entry.errors.push(`${ptr} is a field the published schema knows: additions.json must not have it`);
    }
  }

  // 2. unknown fields: the highest unknown ancestor of each unnoticed value
  const reported = new Set();
  for (const ptr of leaves(obj)) {
    if (ptr === "/apiVersion" || ptr === "/kind") continue;
    if (present.some((p) => under(ptr, p))) continue;
    if (published(Model, replaced(obj, ptr, otherType(get(obj, ptr)))).length) continue;
    let top = ptr;
    for (let up = parentOf(top); up !== ""; up = parentOf(up)) {
      if (/^\d+$/.test(up.slice(up.lastIndexOf("/") + 1))) continue; // a list item
      if (published(Model, replaced(obj, up, otherType(get(obj, up)))).length) break;
      top = up;
    }
    if (!reported.has(top)) {
      reported.add(top);
      entry.errors.push(`${top} is not a field of ${obj.kind}`);
    }
  }
}
process.stdout.write(JSON.stringify(results));
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
