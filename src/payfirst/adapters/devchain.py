"""A local dev chain: anvil on loopback with the demo USDC, a mint token and a BatchSettler
deployed and demo payers funded. Used by `make run` (writes `var/devchain.json`) and by the tests.

Anvil account 0 deploys everything; it owns DemoUSDC, administers the MintToken, holds its
MINTER_ROLE and is the relayer that sends payfirst's transactions. Accounts 1-9 are the
demo payers, funded with 1,000,000 USDC each. The keys are anvil's public dev keys (from
the mnemonic "test test test test test test test test test test test junk"): never use
them anywhere but a local chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from eth_account import Account

from payfirst.adapters import contracts
from payfirst.adapters.chain_rpc import ChainUnavailable, RpcClient
from payfirst.domain.models import Token
from payfirst.evm import abi, calls, signing

__all__ = [
    "ANVIL_KEYS",
    "Deployment",
    "DevAccount",
    "DevChain",
    "DevChainError",
    "anvil_binary",
    "free_port",
    "send_transaction",
]

ANVIL_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)

ANVIL_BIN_ENV = "PAYFIRST_ANVIL_BIN"
USDC_NAME = "USDC"
USDC_VERSION = "2"
USDC_DECIMALS = 6
PAYER_FUNDING = 1_000_000 * 10**USDC_DECIMALS
MINT_TOKEN_CONSTRUCTOR = ["string", "string", "uint256", "uint256", "uint256", "address", "address"]
PRIORITY_FEE = 10**9  # 1 gwei
# The dev chain mines every tx at once and an empty block every this many seconds.
DEV_BLOCK_INTERVAL_S = 0.5
# A chain kept in a state file (`make run`) is also written to it this often, not only on exit.
STATE_INTERVAL_S = 5


class DevChainError(Exception):
    """Anvil could not be found or started, or a deployment transaction failed."""


@dataclass(frozen=True, slots=True)
class DevAccount:
    address: str
    key: str

    @classmethod
    def from_key(cls, key: str) -> DevAccount:
        return cls(address=str(Account.from_key(key).address), key=key)


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where everything lives on the dev chain; enough to configure payfirst against it."""

    rpc_url: str
    chain_id: int
    usdc: str
    usdc_name: str
    usdc_version: str
    token: str
    token_name: str
    token_symbol: str
    price_per_mint: int
    mint_amount: int
    max_mint_count: int
    relayer_address: str
    relayer_key: str
    payers: list[DevAccount]
    # The BatchSettler ("" in a file written before payfirst deployed one: no batching).
    settler: str = ""

    def to_token(self) -> Token:
        return Token(
            address=self.token,
            chain_id=self.chain_id,
            name=self.token_name,
            symbol=self.token_symbol,
            payment_asset=self.usdc,
            asset_name=self.usdc_name,
            asset_version=self.usdc_version,
            asset_decimals=USDC_DECIMALS,
            price_per_mint=self.price_per_mint,
            mint_amount=self.mint_amount,
            max_mint_count=self.max_mint_count,
            reserved_count=0,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (big integers as decimal strings)."""
        return {
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "usdc": self.usdc,
            "usdc_name": self.usdc_name,
            "usdc_version": self.usdc_version,
            "token": self.token,
            "token_name": self.token_name,
            "token_symbol": self.token_symbol,
            "price_per_mint": str(self.price_per_mint),
            "mint_amount": str(self.mint_amount),
            "max_mint_count": str(self.max_mint_count),
            "relayer_address": self.relayer_address,
            "relayer_key": self.relayer_key,
            "payers": [{"address": p.address, "key": p.key} for p in self.payers],
            "settler": self.settler,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deployment:
        return cls(
            rpc_url=str(data["rpc_url"]),
            chain_id=int(data["chain_id"]),
            usdc=str(data["usdc"]),
            usdc_name=str(data["usdc_name"]),
            usdc_version=str(data["usdc_version"]),
            token=str(data["token"]),
            token_name=str(data["token_name"]),
            token_symbol=str(data["token_symbol"]),
            price_per_mint=int(data["price_per_mint"]),
            mint_amount=int(data["mint_amount"]),
            max_mint_count=int(data["max_mint_count"]),
            relayer_address=str(data["relayer_address"]),
            relayer_key=str(data["relayer_key"]),
            payers=[DevAccount(str(p["address"]), str(p["key"])) for p in data["payers"]],
            settler=str(data.get("settler") or ""),
        )

    def save(self, path: str | Path) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        return cls.from_json(json.loads(Path(path).read_text()))


def anvil_binary() -> Path:
    """`$PAYFIRST_ANVIL_BIN`, else the binary of the `@foundry-rs/anvil` package of the
    source checkout payfirst runs from (`npm ci`), else `anvil` on the PATH (an installed
    wheel: Foundry's `foundryup`)."""
    override = os.environ.get(ANVIL_BIN_ENV)
    if override:
        path = Path(override)
    else:
        path = (
            Path(__file__).resolve().parents[3]
            / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
        )
        on_path = shutil.which("anvil")
        if not path.is_file() and on_path is not None:
            path = Path(on_path)
    if not path.is_file():
        raise DevChainError(
            f"anvil not found at {path}: run `npm install` in the repository, install "
            f"Foundry's anvil on the PATH, or set {ANVIL_BIN_ENV} to an anvil binary "
            "(or set PAYFIRST_RPC_URL to a chain of your own)"
        )
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def send_transaction(
    rpc: RpcClient,
    key: str,
    to: str | None,
    data: str,
    *,
    nonce: int | None = None,
    gas: int | None = None,
    value: int = 0,
    chain_id: int | None = None,
    priority_fee: int = PRIORITY_FEE,
) -> str:
    """Signs and broadcasts a type-2 transaction from `key`; returns its hash. Does not
    wait for it to be mined. `nonce` defaults to the sender's pending count and `gas` to
    an estimate plus 20 %."""
    sender = str(Account.from_key(key).address)
    if chain_id is None:
        chain_id = await rpc.chain_id()
    if nonce is None:
        nonce = await rpc.get_transaction_count(sender, "pending")
    if gas is None:
        estimate_tx: dict[str, Any] = {"from": sender, "data": data, "value": value}
        if to is not None:
            estimate_tx["to"] = to
        gas = await rpc.estimate_gas(estimate_tx) * 6 // 5
    base_fee = await rpc.latest_base_fee()
    tx: dict[str, Any] = {
        "chainId": chain_id,
        "nonce": nonce,
        "gas": gas,
        "maxFeePerGas": 2 * base_fee + priority_fee,
        "maxPriorityFeePerGas": priority_fee,
        "data": data,
        "value": value,
    }
    if to is not None:
        tx["to"] = to
    signed = signing.sign_transaction(key, tx)
    return await rpc.send_raw_transaction(signed.raw)


class DevChain:
    """Starts (or attaches to) a dev chain and deploys the demo contracts on it."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        self._rpc: RpcClient | None = None
        self._chain_id = 0
        self._send_lock = asyncio.Lock()
        self.deployment: Deployment | None = None
        # True when start() found `previous` still deployed and deployed nothing.
        self.reused = False

    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:
            raise DevChainError("dev chain not started")
        return self._rpc

    async def __aenter__(self) -> DevChain:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(
        self,
        *,
        port: int | None = None,
        rpc_url: str | None = None,
        block_time: float | None = None,
        token_name: str = "Payfirst Demo",
        token_symbol: str = "PFD",
        mint_amount: int = 1000 * 10**18,
        max_mint_count: int = 100_000,
        price_per_mint: int = 1_000_000,
        funded_payers: int = 9,
        startup_timeout: float = 30.0,
        state_file: str | Path | None = None,
        previous: Deployment | None = None,
        chain_id: int | None = None,
    ) -> Deployment:
        """Starts anvil on 127.0.0.1 (on `port`, or a free one) — or attaches to `rpc_url`,
        a chain where anvil's dev account 0 has ETH — then deploys DemoUSDC and a MintToken
        and funds dev accounts 1..`funded_payers` with 1,000,000 USDC each.

        `state_file`: anvil loads the chain from it if it exists and writes the chain back to
        it on exit (and every few seconds). `previous`: a deployment made on that chain
        before; if its contracts still have code, it is reused (nothing is deployed, see
        `reused`). `chain_id`: the spawned anvil's (default: anvil's 31337), e.g. for a
        second chain beside the first."""
        if self._rpc is not None:
            raise DevChainError("dev chain already started")
        if rpc_url is None:
            port = port if port is not None else free_port()
            rpc_url = f"http://127.0.0.1:{port}"
            await self._spawn_anvil(port, block_time, state_file, chain_id)
        self._rpc = RpcClient(rpc_url)
        try:
            await self._wait_ready(startup_timeout)
            if previous is not None and await self._still_deployed(previous):
                self.reused = True
                self.deployment = dataclasses.replace(previous, rpc_url=rpc_url)
                return self.deployment
            self.deployment = await self._deploy_all(
                rpc_url,
                token_name=token_name,
                token_symbol=token_symbol,
                mint_amount=mint_amount,
                max_mint_count=max_mint_count,
                price_per_mint=price_per_mint,
                funded_payers=funded_payers,
            )
        except BaseException:
            await self.stop()
            raise
        return self.deployment

    async def stop(self) -> None:
        """Stops the anvil this DevChain started (if any) and closes its RPC client."""
        if self._rpc is not None:
            await self._rpc.aclose()
            self._rpc = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- anvil ------------------------------------------------------------------------

    async def _still_deployed(self, previous: Deployment) -> bool:
        """The chain is `previous`'s and its contracts all have code."""
        if previous.chain_id != self._chain_id:
            return False
        addresses = [previous.usdc, previous.token] + (
            [previous.settler] if previous.settler else []
        )
        for address in addresses:
            if not await self.rpc.get_code(address):
                return False
        return True

    async def _spawn_anvil(
        self,
        port: int,
        block_time: float | None,
        state_file: str | Path | None = None,
        chain_id: int | None = None,
    ) -> None:
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--silent"]
        if chain_id is not None:
            args += ["--chain-id", str(chain_id)]
        if state_file is not None:
            Path(state_file).parent.mkdir(parents=True, exist_ok=True)
            # Loaded at start if it exists; written on exit and every STATE_INTERVAL_S (a
            # kill -9 loses at most that much).
            args += ["--state", str(state_file), "--state-interval", str(STATE_INTERVAL_S)]
        if block_time is not None:
            args += ["--block-time", str(block_time)]
        else:
            # Each tx mined at once (automine), and an empty block every interval as well, so
            # the head moves on and receipts reach the confirmation depth (anvil's default
            # depth is 1, payfirst.pipeline.decide) even when no other tx comes.
            args += ["--mixed-mining", "--block-time", str(DEV_BLOCK_INTERVAL_S)]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as anvil
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def _anvil_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    async def _wait_ready(self, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        while True:
            if self._process is not None and self._process.returncode is not None:
                raise DevChainError(
                    f"anvil exited with code {self._process.returncode}: {self._anvil_stderr()}"
                )
            try:
                self._chain_id = await self.rpc.chain_id()
                return
            except ChainUnavailable:
                if time.monotonic() >= deadline:
                    raise DevChainError(
                        f"no dev chain answering at {self.rpc.url} after {max_wait}s"
                    ) from None
                await asyncio.sleep(0.05)

    # -- deployment -------------------------------------------------------------------

    @property
    def deployer(self) -> DevAccount:
        return DevAccount.from_key(ANVIL_KEYS[0])

    async def _send_in_order(
        self, txs: list[tuple[str | None, str, int | None]]
    ) -> list[dict[str, Any]]:
        """Sends (to, data, gas) transactions from the deployer, one after the other in nonce
        order, then waits for all receipts; raises if any reverted."""
        deployer = self.deployer
        async with self._send_lock:
            nonce = await self.rpc.get_transaction_count(deployer.address, "pending")
            hashes = []
            for offset, (to, data, gas) in enumerate(txs):
                hashes.append(
                    await send_transaction(
                        self.rpc,
                        deployer.key,
                        to,
                        data,
                        nonce=nonce + offset,
                        gas=gas,
                        chain_id=self._chain_id,
                    )
                )
            receipts = [await self.rpc.wait_for_receipt(h) for h in hashes]
        for receipt in receipts:
            if int(receipt["status"], 16) != 1:
                raise DevChainError(f"dev chain transaction {receipt['transactionHash']} reverted")
        return receipts

    async def _deploy(self, data: str) -> str:
        (receipt,) = await self._send_in_order([(None, data, None)])
        address = receipt.get("contractAddress")
        if not address:
            raise DevChainError(f"deployment {receipt['transactionHash']} created no contract")
        return abi.checksum(str(address))

    async def deploy_usdc(self) -> str:
        """Deploys a DemoUSDC owned by the deployer; returns its address."""
        data = contracts.deploy_data(
            contracts.load_artifact("DemoUSDC"), ["address"], [self.deployer.address]
        )
        return await self._deploy(data)

    async def deploy_settler(self) -> str:
        """Deploys a BatchSettler (no owner, no constructor arguments); returns its address."""
        return await self._deploy(contracts.load_artifact("BatchSettler").bytecode)

    async def deploy_token(
        self,
        *,
        payment_token: str | None = None,
        name: str = "Payfirst Demo",
        symbol: str = "PFD",
        mint_amount: int = 1000 * 10**18,
        max_mint_count: int = 100_000,
        price_per_mint: int = 1_000_000,
        admin: str | None = None,
        minter: str | None = None,
    ) -> str:
        """Deploys a MintToken (paid in `payment_token`, default the deployment's USDC) and
        grants MINTER_ROLE to `minter` (default the deployer/relayer); returns its address.
        `admin` (default the deployer) gets DEFAULT_ADMIN_ROLE; a foreign admin means the
        deployer cannot grant the role, so then `minter` is left ungranted."""
        if payment_token is None:
            if self.deployment is None:
                raise DevChainError("no payment token: start() the dev chain first")
            payment_token = self.deployment.usdc
        deployer = self.deployer.address
        admin = admin or deployer
        data = contracts.deploy_data(
            contracts.load_artifact("MintToken"),
            MINT_TOKEN_CONSTRUCTOR,
            [
                name,
                symbol,
                mint_amount,
                max_mint_count,
                price_per_mint,
                abi.checksum(payment_token),
                abi.checksum(admin),
            ],
        )
        token = await self._deploy(data)
        if abi.checksum(admin) == deployer:
            await self._send_in_order(
                [(token, calls.grant_role(calls.MINTER_ROLE, minter or deployer), 200_000)]
            )
        return token

    async def fund(self, addresses: list[str], amount: int = PAYER_FUNDING) -> None:
        """Mints `amount` demo USDC to each address."""
        if self.deployment is None:
            raise DevChainError("dev chain not started")
        usdc = self.deployment.usdc
        await self._send_in_order([(usdc, calls.mint_usdc(a, amount), 200_000) for a in addresses])

    async def _deploy_all(
        self,
        rpc_url: str,
        *,
        token_name: str,
        token_symbol: str,
        mint_amount: int,
        max_mint_count: int,
        price_per_mint: int,
        funded_payers: int,
    ) -> Deployment:
        deployer = self.deployer
        usdc = await self.deploy_usdc()
        token = await self.deploy_token(
            payment_token=usdc,
            name=token_name,
            symbol=token_symbol,
            mint_amount=mint_amount,
            max_mint_count=max_mint_count,
            price_per_mint=price_per_mint,
        )
        settler = await self.deploy_settler()
        payers = [DevAccount.from_key(k) for k in ANVIL_KEYS[1 : 1 + funded_payers]]
        deployment = Deployment(
            rpc_url=rpc_url,
            chain_id=self._chain_id,
            usdc=usdc,
            usdc_name=USDC_NAME,
            usdc_version=USDC_VERSION,
            token=token,
            token_name=token_name,
            token_symbol=token_symbol,
            price_per_mint=price_per_mint,
            mint_amount=mint_amount,
            max_mint_count=max_mint_count,
            relayer_address=deployer.address,
            relayer_key=deployer.key,
            payers=payers,
            settler=settler,
        )
        self.deployment = deployment
        await self.fund([p.address for p in payers])
        return deployment
