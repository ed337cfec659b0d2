"""The relayer: the key that pays gas and signs every transaction payfirst sends."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes

from payfirst.domain.models import SignedTx
from payfirst.evm.signing import sign_transaction
from payfirst.ports.chain import Chain

GWEI = 10**9
PRIORITY_FEE = 1 * GWEI
# Explicit gas: estimating each call would cost an RPC round trip per payment.
GAS_TRANSFER_WITH_AUTHORIZATION = 120_000
# A BatchSettler `settle` tx: base + per item. Measured on anvil: ~37-45k per item, ~66k
# worst case (cold payer, payee's first balance); unused gas is not paid for, and an item
# that ran short of gas would fail on its own inside the batch, so the margin is wide.
# A settle tx: intrinsic gas, the first transfer into a payee whose balance was zero (a
# fresh storage slot), then ~38-45k per authorization measured on DemoUSDC: 55k leaves a
# margin so no inner call runs short. Block builders pack by the gas limit we set, so an
# inflated figure would cut how many payments fit in a block.
GAS_SETTLE_BASE = 80_000
GAS_SETTLE_PER_ITEM = 55_000
GAS_BATCH_MINT_BASE = 60_000
GAS_BATCH_MINT_PER_ITEM = 80_000


@dataclass(frozen=True, slots=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


async def current_fees(chain: Chain) -> Fees:
    """EIP-1559 fees from the latest base fee: room for the base fee to double."""
    base_fee = await chain.latest_base_fee()
    return fees_for(base_fee)


def fees_for(base_fee: int) -> Fees:
    """EIP-1559 fees for this base fee: room for the base fee to double."""
    return Fees(max_fee_per_gas=2 * base_fee + PRIORITY_FEE, max_priority_fee_per_gas=PRIORITY_FEE)


def tx_fees(raw_tx: str) -> Fees:
    """The EIP-1559 fees a signed (type 2) transaction offers."""
    tx = TypedTransaction.from_bytes(HexBytes(raw_tx)).as_dict()
    return Fees(int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"]))


def settle_gas(items: int) -> int:
    """The explicit gas limit of a BatchSettler `settle` tx of `items` authorizations."""
    return GAS_SETTLE_BASE + GAS_SETTLE_PER_ITEM * items


def max_settle_items(block_gas_limit: int) -> int:
    """The most authorizations one `settle` tx may carry so its gas stays under half the
    block gas limit (it must fit in a block beside other traffic); at least 1."""
    return max(1, (block_gas_limit // 2 - GAS_SETTLE_BASE) // GAS_SETTLE_PER_ITEM)


@dataclass(frozen=True, slots=True)
class Relayer:
    address: str
    key: str
    chain_id: int

    @classmethod
    def from_key(cls, key: str, chain_id: int) -> Relayer:
        return cls(address=Account.from_key(key).address, key=key, chain_id=chain_id)

    def sign_call(self, to: str, data: str, nonce: int, gas: int, fees: Fees) -> SignedTx:
        return sign_transaction(
            self.key,
            {
                "chainId": self.chain_id,
                "nonce": nonce,
                "to": to,
                "data": data,
                "gas": gas,
                "maxFeePerGas": fees.max_fee_per_gas,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            },
        )

    def replace_fees(self, raw_tx: str, fees: Fees) -> SignedTx:
        """The same transaction (nonce, to, data, gas, value) signed again with `fees`."""
        tx = TypedTransaction.from_bytes(HexBytes(raw_tx)).as_dict()
        return sign_transaction(
            self.key,
            {
                "chainId": int(tx["chainId"]),
                "nonce": int(tx["nonce"]),
                "to": "0x" + bytes(tx["to"]).hex(),
                "data": "0x" + bytes(tx["data"]).hex(),
                "value": int(tx["value"]),
                "gas": int(tx["gas"]),
                "maxFeePerGas": fees.max_fee_per_gas,
                "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            },
        )

    def __repr__(self) -> str:  # never print the key
        return f"Relayer({self.address}, chain {self.chain_id})"
