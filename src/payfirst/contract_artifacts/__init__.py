"""The compiled contracts (ABI + bytecode) payfirst deploys and calls, shipped as package
data: `<Name>.json`, written by `make contracts` (contracts/compile.mjs, solc-js) from
contracts/src/*.sol and committed. Read them with `payfirst.adapters.contracts.load_artifact`."""
