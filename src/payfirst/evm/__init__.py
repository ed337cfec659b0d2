"""The EVM encoding payfirst needs, as pure functions: ABI calldata and return data
(`abi`, `calls`) and transaction signing (`signing`). No IO: the chain adapter sends."""
