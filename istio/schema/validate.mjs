// Validate Kubernetes objects against Istio's own CRD schemas, unknown
// fields included.
//
//   node istio/schema/validate.mjs <node_modules dir>  < objects.json
//
// stdin: a JSON array of objects (YAML documents, parsed by the caller).
// stdout: a JSON array, one entry per object:
//   {"kind": ..., "apiVersion": ..., "name": ..., "errors": [..]}   ([] = valid)
// Exit status 0 when every object is valid, 1 otherwise, 2 on usage errors.
//
// The validators come from @kubernetes-models/istio (istio/schema/package.json,
// installed by `make istio-schema`): ajv code generated from the
// openAPIV3Schema of Istio's CRDs (crd-all.gen.yaml of the Istio release
// named in that package's package.json). One run of the validator of the
// object's kind gives two checks:
//
// 1. The schema: types, enums, patterns, required fields and bounds. Like
//    the API server's schema validation, no x-kubernetes-validations (CEL)
//    rules; and, as generated, no rejection of unknown fields (the schemas
//    do not close their objects with additionalProperties: false).
// 2. Unknown fields. The package has the compiled validators, not the
//    schemas, so the validator runs on a view of the object that notes,
//    for every object and list in it, which keys the validator looks up.
//    ajv's generated code looks up every property its schema declares,
//    present or not; every key of a map (additionalProperties); and no key
//    of a free-form object (type: object with
//    x-kubernetes-preserve-unknown-fields: Istio's protobuf Struct fields,
//    such as WasmPlugin's spec.pluginConfig and EnvoyFilter's
//    configPatches[].patch.value). So a key the validator did not look up,
//    in an object whose keys it did look up, is not a field of the schema:
//    "<JSON pointer> is not a field of <Kind>" (the outermost such key;
//    nothing under it is reported). Objects it looked up no key of are
//    free-form and stay free-form. A top-level object with no key looked
//    up would make the check blind: that is an error of its own.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: validate.mjs <node_modules dir> < objects.json");
  process.exit(2);
}
const pkgDir = join(modules, "@kubernetes-models", "istio");
const objects = JSON.parse(readFileSync(0, "utf8"));

// JSON pointer (RFC 6901) token.
const escape = (k) => String(k).replaceAll("~", "~0").replaceAll("/", "~1");

// A view of `root` whose objects and lists note the (string) keys looked up
// in them: `looked` maps each object or list to the set of its keys read.
function recording(root) {
  const looked = new WeakMap();
  const views = new WeakMap();
  const view = (value) => {
    if (value === null || typeof value !== "object") return value;
    let v = views.get(value);
    if (!v) {
      const keys = new Set();
      looked.set(value, keys);
      v = new Proxy(value, {
        get(target, key, receiver) {
          if (typeof key !== "string") return Reflect.get(target, key, receiver);
          keys.add(key);
          return Object.hasOwn(target, key) ? view(target[key]) : Reflect.get(target, key, receiver);
        },
        has(target, key) {
          if (typeof key === "string") keys.add(key);
          return Reflect.has(target, key);
        },
      });
      views.set(value, v);
    }
    return v;
  };
  return { view: view(root), looked };
}

// The keys of `value` the validator did not look up, where it looked up
// others, as JSON pointers; free-form objects (no key looked up) skipped.
function* unknownKeys(value, looked, ptr = "") {
  const keys = looked.get(value);
  if (!keys || keys.size === 0) return;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) yield* unknownKeys(item, looked, `${ptr}/${i}`);
    return;
  }
  for (const k of Object.keys(value)) {
    const at = `${ptr}/${escape(k)}`;
    if (keys.has(k)) yield* unknownKeys(value[k], looked, at);
    else yield at;
  }
}

const message = (err) => `${err.instancePath || "/"} ${err.message}` +
  (err.params?.allowedValues ? `: ${JSON.stringify(err.params.allowedValues)}` : "") +
  (err.params?.additionalProperty ? `: ${err.params.additionalProperty}` : "");

const results = [];
for (const obj of objects) {
  const [group, version] = String(obj.apiVersion ?? "").split("/");
  const entry = { kind: obj.kind, apiVersion: obj.apiVersion, name: obj.metadata?.name, errors: [] };
  results.push(entry);
  if (!group || !version || !group.endsWith("istio.io") || !/^[A-Za-z]+$/.test(obj.kind ?? "")) {
    entry.errors.push(`not an Istio resource: ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  let Model;
  try {
    const mod = await import(pathToFileURL(join(pkgDir, group, version, `${obj.kind}.js`)).href);
    Model = mod[obj.kind];
  } catch (e) {
    entry.errors.push(`no schema for ${obj.apiVersion} ${obj.kind}: ${e.message}`);
    continue;
  }
  if (typeof Model !== "function") {
    entry.errors.push(`no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }

  // 1. the schema, run on the recording view
  const model = new Model(obj);
  const { view, looked } = recording(model);
  try {
    model.validate.call(view);
  } catch (e) {
    const errs = e.errors ?? [];
    if (errs.length) entry.errors.push(...errs.map(message));
    else entry.errors.push(String(e.message ?? e));
  }

  // 2. unknown fields
  if (!looked.get(model)?.size) {
    entry.errors.push(`the validator of ${obj.kind} looked up no field: cannot check for unknown fields`);
    continue;
  }
  for (const ptr of unknownKeys(model, looked)) entry.errors.push(`${ptr} is not a field of ${obj.kind}`);
}
process.stdout.write(JSON.stringify(results));
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
