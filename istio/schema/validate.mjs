// Validate Kubernetes objects against Istio's own CRD schemas.
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
// named in that package's package.json). They check types, enums, patterns,
// required fields and bounds; like the API server's schema validation they
// do not evaluate x-kubernetes-validations (CEL) rules.
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
  try {
    new Model(obj).validate();
  } catch (e) {
    const errs = e.errors ?? [];
    if (errs.length) {
      for (const err of errs) {
        entry.errors.push(`${err.instancePath || "/"} ${err.message}` +
          (err.params?.allowedValues ? `: ${JSON.stringify(err.params.allowedValues)}` : ""));
      }
    } else {
      entry.errors.push(String(e.message ?? e));
    }
  }
}
process.stdout.write(JSON.stringify(results));
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
