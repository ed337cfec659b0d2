// Compiles contracts/src/*.sol with solc-js into src/payfirst/contract_artifacts/<Name>.json
// (package data: they ship inside the wheel). Usage: node contracts/compile.mjs
// (output is deterministic; the artifacts are committed)
import { createRequire } from "node:module";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..");
const srcDir = join(here, "src");
const buildDir = join(repo, "src", "payfirst", "contract_artifacts");
const nodeModules = join(repo, "node_modules");
const CONTRACTS = ["DemoUSDC", "MintToken", "BatchSettler"];

function findImports(path) {
  try {
    if (path.startsWith("@openzeppelin/")) {
      return { contents: readFileSync(join(nodeModules, path), "utf8") };
    }
    return { contents: readFileSync(join(srcDir, path), "utf8") };
  } catch (err) {
    return { error: `cannot resolve import ${path}: ${err.message}` };
  }
}

const input = {
  language: "Solidity",
  sources: Object.fromEntries(
    CONTRACTS.map((name) => [
      `${name}.sol`,
      { content: readFileSync(join(srcDir, `${name}.sol`), "utf8") },
    ]),
  ),
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors ?? []).filter((e) => e.severity === "error");
for (const e of output.errors ?? []) {
  console.error(e.formattedMessage ?? e.message);
}
if (errors.length > 0) {
  process.exit(1);
}

const solcVersion = solc.version();
mkdirSync(buildDir, { recursive: true });
for (const name of CONTRACTS) {
  const contract = output.contracts[`${name}.sol`][name];
  const artifact = {
    contractName: name,
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    solcVersion,
  };
  const file = join(buildDir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(artifact, null, 2)}\n`);
  console.log(`wrote ${file} (${contract.evm.bytecode.object.length / 2} bytes)`);
}
