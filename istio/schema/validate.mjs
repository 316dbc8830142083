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
// 2. Unknown fields: a key the validator does not look up
//    (tests/schema/unknown-fields.mjs), "<JSON pointer> is not a field of
//    <Kind>". The free-form objects are Istio's protobuf Struct fields, such
//    as WasmPlugin's spec.pluginConfig and EnvoyFilter's
//    configPatches[].patch.value.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { unknownFieldErrors, validateRecording } from "../../tests/schema/unknown-fields.mjs";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: validate.mjs <node_modules dir> < objects.json");
  process.exit(2);
}
const pkgDir = join(modules, "@kubernetes-models", "istio");
const objects = JSON.parse(readFileSync(0, "utf8"));

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

  // 1. the schema, run on a recording view; 2. the keys it did not look up
  const model = new Model(obj);
  const { errors, looked } = validateRecording(model);
  entry.errors.push(...errors, ...unknownFieldErrors(model, obj.kind, looked));
}
process.stdout.write(JSON.stringify(results));
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
