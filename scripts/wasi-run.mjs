// Runs a wasm32-wasip1 test binary (libtest harness) under Node's built-in WASI, so the pure core's unit
// tests execute on the same target Envoy loads (32-bit usize, wasm codegen). Used as the cargo runner:
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node scripts/wasi-run.mjs"
// The repository root is preopened at its own path so tests can read fixtures by absolute path.
// It also runs the `filter/examples` benchmarks inside V8: `node scripts/wasi-run.mjs <example.wasm> sse 20`.
// Those link the whole crate, whose proxy-wasm glue imports host functions from "env" (never called there:
// each gets a stub returning 0) and exports a reactor `_initialize` (they run as a command instead).
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const [, , wasmPath, ...args] = argv;
const wasi = new WASI({ version: "preview1", args: [wasmPath, ...args], env, preopens: { [root]: root }, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.kind === "function" && !imports[imp.module]?.[imp.name]) {
    imports[imp.module] = imports[imp.module] || {};
    imports[imp.module][imp.name] = () => 0;
  }
}
const instance = await WebAssembly.instantiate(module, imports);
const { _start, memory } = instance.exports;
exit(wasi.start({ exports: { _start, memory } }));
