// Runs a wasm32-wasip1 example (filter/examples/*.rs) under Node's built-in WASI: the filter's pure data
// path inside V8, the engine Envoy embeds. The examples link the whole crate, whose proxy-wasm glue imports
// host functions from "env"; they are never called here, so each is a stub that returns 0.
//   node scripts/wasi-bench.mjs target/.../examples/hotpath.wasm sse 20
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [, , wasmPath, ...args] = argv;
const wasi = new WASI({ version: "preview1", args: [wasmPath, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(wasmPath));
const imports = wasi.getImportObject();
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.kind === "function" && !(imports[imp.module] && imports[imp.module][imp.name])) {
    imports[imp.module] = imports[imp.module] || {};
    imports[imp.module][imp.name] = () => 0;
  }
}
const instance = await WebAssembly.instantiate(module, imports);
// The crate also exports a reactor `_initialize` (for Envoy); run the example as a command.
const { _start, memory } = instance.exports;
exit(wasi.start({ exports: { _start, memory } }));
