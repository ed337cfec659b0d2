"""Batched settlement without IO: the settle calldata against the compiled ABI, the gas
cap, and reading per-item outcomes from a receipt's logs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

from eth_utils.crypto import keccak

from payfirst.adapters import contracts
from payfirst.domain.models import Authorization, Payment
from payfirst.domain.statuses import PaymentStatus, PaymentType
from payfirst.evm import abi, calls
from payfirst.pipeline.confirmer import authorization_of
from payfirst.pipeline.relayer import GAS_SETTLE_BASE, max_settle_items, settle_gas
from payfirst.ports.chain import AUTHORIZATION_USED_TOPIC, Log, Receipt

ASSET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PAY_TO = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"


def _auth(nonce_byte: int) -> Authorization:
    return Authorization(
        from_=PAYER,
        to=PAY_TO,
        value=1_000_000,
        valid_after=0,
        valid_before=2**40,
        nonce="0x" + f"{nonce_byte:02x}" * 32,
        signature="0x" + "11" * 32 + "22" * 32 + "1b",
    )


def _payment(auth: Authorization) -> Payment:
    return Payment(
        id=uuid4(),
        payment_type=PaymentType.MINT,
        payer=PAYER,
        amount=auth.value,
        payment_asset=ASSET,
        pay_to=PAY_TO,
        quantity=1,
        authorization=auth,
        metadata={},
        status=PaymentStatus.SENT,
        tx_hash="0x" + "ee" * 32,
        tx_nonce=0,
        relayer=PAYER,
        raw_tx="0x02",
        error=None,
        created_at=datetime.now(UTC),
        processed_at=None,
        result=None,
    )


def test_settle_calldata_matches_the_compiled_abi() -> None:
    (settle,) = [
        f for f in contracts.load_artifact("BatchSettler").abi if f.get("name") == "settle"
    ]
    components = ",".join(c["type"] for c in settle["inputs"][1]["components"])
    signature = f"settle(address,({components})[])"
    assert signature == calls.SETTLE_BATCH
    data = calls.settle_batch(ASSET, [_auth(1), _auth(2)])
    assert data.startswith("0x" + abi.selector(signature).hex())
    asset, items = abi.decode_result(
        ["address", "(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)[]"],
        "0x" + data[10:],
    )
    assert asset.lower() == ASSET.lower()
    assert [item[5] for item in items] == [bytes([1]) * 32, bytes([2]) * 32]
    assert items[0][6] == 27


def test_a_settle_tx_stays_under_half_a_block() -> None:
    for gas_limit in (30_000_000, 36_000_000, 150_000_000):
        n = max_settle_items(gas_limit)
        assert settle_gas(n) <= gas_limit // 2 < settle_gas(n + 1)
    assert max_settle_items(GAS_SETTLE_BASE) == 1  # never zero


def test_authorizations_used_reads_the_receipt_logs() -> None:
    paid, failed = _payment(_auth(1)), _payment(_auth(2))
    payer_topic = "0x" + PAYER[2:].lower().rjust(64, "0")
    transfer_topic = "0x" + keccak(text="Transfer(address,address,uint256)").hex()

    def log(address: str, *topics: str) -> Log:
        return Log(address, topics, "0x", block_number=1, tx_hash="0x" + "ee" * 32)

    receipt = Receipt(
        tx_hash="0x" + "ee" * 32,
        block_number=1,
        block_hash="0x" + "bb" * 32,
        success=True,
        to=ASSET,
        logs=(
            log(ASSET, transfer_topic, payer_topic, "0x" + "00" * 32),
            log(ASSET, AUTHORIZATION_USED_TOPIC, payer_topic, "0x" + "01" * 32),
            # The same event from another contract proves nothing about our asset.
            log(PAY_TO, AUTHORIZATION_USED_TOPIC, payer_topic, "0x" + "02" * 32),
        ),
    )
    assert receipt.used(authorization_of(paid))
    assert not receipt.used(authorization_of(failed))
    assert replace(receipt, success=False).authorizations_used() == frozenset()
