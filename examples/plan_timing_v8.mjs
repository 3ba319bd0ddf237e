// Runs `examples/plan_timing.rs` built for wasm32-wasip1 in Node's V8 (the Wasm engine Envoy
// uses), to time the planner as compiled Wasm without an Envoy or a load generator:
//   node --no-warnings examples/plan_timing_v8.mjs PLAN_TIMING.wasm
// Build the .wasm from a scratch crate whose main.rs is plan_timing.rs and which depends on this
// one by path (the examples here pull the harness's dev-dependencies, which do not build for
// wasm). The filter's proxy_* imports are stubbed: the planner never calls the host.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';

const wasi = new WASI({ version: 'preview1', args: [], env: {} });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const imports = wasi.getImportObject();
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  imports[from] ??= {};
  imports[from][name] ??= () => {
    throw new Error(`host call ${name} in a planner timing run`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The cdylib also exports `_initialize`, which WASI.start refuses beside `_start`.
wasi.start({ exports: { memory: instance.exports.memory, _start: instance.exports._start } });
