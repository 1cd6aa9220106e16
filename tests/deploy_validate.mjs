// Validates Kubernetes objects against Istio's CRD schemas, offline.
//
// The schemas come from @kubernetes-models/istio (ajv validators generated from Istio's CRDs, pinned in
// tests/package.json). Input on stdin: a JSON array of {"source": "...", "doc": {...}}. Output on
// stdout: a JSON array of {"source", "kind", "ok", "error"}. Exit 0 when the run itself worked
// (the caller judges the results), 2 on bad input.
//
// Usage: node tests/deploy_validate.mjs <node_modules dir> < docs.json
// The generated validators check types, enums and required fields but accept unknown field names
// (a typo like `failStratgy` would pass and then be pruned by the API server). So the script also
// walks the package's TypeScript declarations (the same CRD schemas as nested object types) and
// reports any field they do not declare. Not checked: Istio's CEL rules. Struct-typed values
// (EnvoyFilter patch values, WasmPlugin pluginConfig) are free-form here; tests/test_deploy_configs.py
// validates those with Envoy itself.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node deploy_validate.mjs <node_modules dir> < docs.json");
  process.exit(2);
}
const root = join(modules, "@kubernetes-models", "istio");

let items;
try {
  items = JSON.parse(readFileSync(0, "utf8"));
} catch (e) {
  console.error(`bad input: ${e.message}`);
  process.exit(2);
}

const results = [];
for (const { source, doc } of items) {
  const kind = doc?.kind ?? "";
  const apiVersion = doc?.apiVersion ?? "";
  const [group, version] = apiVersion.split("/");
  const result = { source, kind: `${apiVersion} ${kind}`, ok: false, error: null };
  // Only Istio groups have models here; anything else is reported, not guessed at.
  if (!group || !version || !group.endsWith("istio.io") || !/^[A-Za-z]+$/.test(kind)) {
    result.error = "not an Istio kind known to @kubernetes-models/istio";
    results.push(result);
    continue;
  }
  let Model;
  try {
    const mod = await import(pathToFileURL(join(root, group, version, `${kind}.js`)).href);
    Model = mod[kind];
  } catch (e) {
    result.error = `no schema for ${apiVersion} ${kind}: ${e.message}`;
    results.push(result);
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    result.error = e.message;
    results.push(result);
    continue;
  }
  try {
    const shape = declaredShape(readFileSync(join(root, group, version, `${kind}.d.ts`), "utf8"), kind);
    // A schemaless CRD (IstioOperator: x-kubernetes-preserve-unknown-fields) declares no spec at all:
    // its spec cannot be checked here.
    if (shape?.props && !shape.props.has("spec")) shape.props.set("spec", null);
    const unknown = [];
    unknownFields(doc, shape, "", unknown);
    if (unknown.length > 0) {
      result.error = `unknown field(s): ${unknown.join(", ")}`;
    } else {
      result.ok = true;
    }
  } catch (e) {
    result.error = `cannot read the declared fields of ${kind}: ${e.message}`;
  }
  results.push(result);
}
process.stdout.write(JSON.stringify(results));

// --- Declared fields from the .d.ts -------------------------------------------------------------
// A shape is {props: Map<name, shape>, open: bool} for an object, {items: shape} for an array, or
// null for anything not checked (scalars, references such as IObjectMeta, `{}` Structs). Unions and
// intersections (how the generator writes protobuf oneofs: `{...} & ({a} | {b})`) merge the fields
// of every alternative: the check is "is this name declared anywhere here", not oneof exclusivity
// (that part the ajv validator already checks).

function declaredShape(dts, kind) {
  const text = dts.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
  const start = text.indexOf(`export interface I${kind} {`);
  if (start < 0) throw new Error(`interface I${kind} not found`);
  const p = { text, i: text.indexOf("{", start) };
  return parseObject(p);
}

function skipWs(p) {
  while (p.i < p.text.length && /\s/.test(p.text[p.i])) p.i++;
}

function expect(p, c) {
  skipWs(p);
  if (p.text[p.i] !== c) throw new Error(`expected '${c}' near: ${p.text.slice(p.i, p.i + 40)}`);
  p.i++;
}

function merge(a, b) {
  if (!a) return b;
  if (!b) return a;
  const out = {};
  if (a.items || b.items) out.items = merge(a.items ?? null, b.items ?? null);
  if (a.props || b.props) {
    out.props = new Map(a.props ?? []);
    for (const [k, v] of b.props ?? []) out.props.set(k, out.props.has(k) ? merge(out.props.get(k), v) : v);
    out.open = Boolean(a.open || b.open);
  }
  return out;
}

function parseObject(p) {
  expect(p, "{");
  const props = new Map();
  let open = false;
  let any = false;
  for (;;) {
    skipWs(p);
    const c = p.text[p.i];
    if (c === undefined) throw new Error("unterminated object type");
    if (c === "}") {
      p.i++;
      break;
    }
    any = true;
    if (c === "[") {
      // Index signature: a map with free keys.
      p.i = p.text.indexOf("]", p.i) + 1;
      expect(p, ":");
      parseType(p);
      open = true;
    } else {
      const m = /^"((?:[^"\\]|\\.)*)"\??\s*:|^([A-Za-z_$][\w$]*)\??\s*:/.exec(p.text.slice(p.i));
      if (!m) throw new Error(`unexpected text near: ${p.text.slice(p.i, p.i + 40)}`);
      p.i += m[0].length;
      const name = m[1] ?? m[2];
      const t = parseType(p);
      props.set(name, props.has(name) ? merge(props.get(name), t) : t);
    }
    skipWs(p);
    if (p.text[p.i] === ";" || p.text[p.i] === ",") p.i++;
  }
  // `{}` is a protobuf Struct / free-form value: do not check its keys.
  return any ? { props, open } : null;
}

// A type expression: terms joined by '|' or '&', ending at ; , > ) } ] at this depth.
function parseType(p) {
  let shape = null;
  for (;;) {
    shape = merge(shape, parseTerm(p));
    skipWs(p);
    const c = p.text[p.i];
    if (c === "|" || c === "&") {
      p.i++;
      continue;
    }
    return shape;
  }
}

function parseTerm(p) {
  skipWs(p);
  const rest = p.text.slice(p.i);
  let shape = null;
  if (rest.startsWith("{")) {
    shape = parseObject(p);
  } else if (rest.startsWith("(")) {
    p.i++;
    shape = parseType(p);
    expect(p, ")");
  } else if (rest.startsWith('"')) {
    p.i = p.text.indexOf('"', p.i + 1) + 1;
  } else {
    const m = /^[A-Za-z_$][\w$.]*|^-?\d+(\.\d+)?/.exec(rest);
    if (!m) throw new Error(`unexpected type near: ${rest.slice(0, 40)}`);
    p.i += m[0].length;
    skipWs(p);
    if (p.text[p.i] === "<") {
      // Generic: Array<T> is an array; Exclude<A, B>, Record<K, V>, ...: merge the arguments.
      p.i++;
      let args = parseType(p);
      skipWs(p);
      while (p.text[p.i] === ",") {
        p.i++;
        args = merge(args, parseType(p));
        skipWs(p);
      }
      expect(p, ">");
      shape = m[0] === "Array" ? (args ? { items: args } : null) : args;
    }
  }
  skipWs(p);
  while (p.text.startsWith("[]", p.i)) {
    p.i += 2;
    shape = shape ? { items: shape } : null;
  }
  return shape;
}

function unknownFields(value, shape, path, out) {
  if (!shape || value === null || typeof value !== "object") return;
  if (Array.isArray(value)) {
    if (shape.items) value.forEach((v, i) => unknownFields(v, shape.items, `${path}[${i}]`, out));
    return;
  }
  if (!shape.props) return;
  for (const [key, v] of Object.entries(value)) {
    const sub = shape.props.get(key);
    if (sub === undefined) {
      if (!shape.open) out.push(`${path}.${key}`.replace(/^\./, ""));
      continue;
    }
    unknownFields(v, sub, `${path}.${key}`, out);
  }
}
