// Unknown fields of a Kubernetes object, as the schema's own validator sees
// them: shared by istio/schema/validate.mjs and gateway/schema/validate.mjs.
//
// The @kubernetes-models packages ship ajv code generated from each kind's
// openAPIV3Schema, not the schemas, and those schemas do not close their
// objects (no additionalProperties: false), so the validators let unknown
// fields through. The validator runs instead on a view of the object that
// notes, for every object and list in it, which keys the validator looks
// up. ajv's generated code looks up every property its schema declares,
// present or not; every key of a map (additionalProperties); and no key of a
// free-form object (type: object with x-kubernetes-preserve-unknown-fields,
// such as a protobuf Struct). So a key the validator did not look up, in an
// object whose keys it did look up, is not a field of the schema. Objects it
// looked up no key of are free-form and stay free-form.

// A JSON pointer (RFC 6901) token.
export const escape = (k) => String(k).replaceAll("~", "~0").replaceAll("/", "~1");

// One ajv error as text: where, what, and the allowed values or the extra key.
export const message = (err, at = "") => `${at}${err.instancePath || (at ? "" : "/")} ${err.message}` +
  (err.params?.allowedValues ? `: ${JSON.stringify(err.params.allowedValues)}` : "") +
  (err.params?.additionalProperty ? `: ${err.params.additionalProperty}` : "");

// A view of `root` whose objects and lists note the (string) keys looked up
// in them: `looked` maps each object or list to the set of its keys read.
export function recording(root) {
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

// Runs `model`'s validator on a recording view of it. Returns the schema's
// errors as text and the keys looked up.
export function validateRecording(model) {
  const { view, looked } = recording(model);
  try {
    model.validate.call(view);
    return { errors: [], looked };
  } catch (e) {
    const errs = e.errors ?? [];
    return { errors: errs.length ? errs.map((err) => message(err)) : [String(e.message ?? e)], looked };
  }
}

// The keys of `value` the validator did not look up, where it looked up
// others, as JSON pointers: the outermost such key, nothing under it.
// Free-form objects (no key looked up) and the pointers in `skip` (with
// everything under them) are passed over.
export function* unknownKeys(value, looked, skip = new Set(), ptr = "") {
  if (skip.has(ptr)) return;
  const keys = looked.get(value);
  if (!keys || keys.size === 0) return;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) yield* unknownKeys(item, looked, skip, `${ptr}/${i}`);
    return;
  }
  for (const k of Object.keys(value)) {
    const at = `${ptr}/${escape(k)}`;
    if (skip.has(at)) continue;
    if (keys.has(k)) yield* unknownKeys(value[k], looked, skip, at);
    else yield at;
  }
}

// The errors of the unknown-field check of `model` (an object of `kind`),
// given the keys its validator looked up; `skip` as in unknownKeys. A
// top-level object with no key looked up would make the check blind: that is
// an error of its own.
export function unknownFieldErrors(model, kind, looked, skip = new Set()) {
  if (!looked.get(model)?.size) {
    return [`the validator of ${kind} looked up no field: cannot check for unknown fields`];
  }
  return [...unknownKeys(model, looked, skip)].map((ptr) => `${ptr} is not a field of ${kind}`);
}
