from uuid import UUID, uuid4

from hypothesis import given
from hypothesis import strategies as st

from payfirst.pipeline.mint_ids import mint_id, mint_ids

PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_mint_ids_are_deterministic_bytes32() -> None:
    payment = UUID("12345678-1234-5678-1234-567812345678")
    ids = mint_ids(PAYER, payment, 3)
    assert ids == mint_ids(PAYER, payment, 3)
    assert all(len(i) == 66 and i.startswith("0x") and i == i.lower() for i in ids)
    assert len(set(ids)) == 3


@given(st.uuids(), st.uuids(), st.integers(0, 1000))
def test_different_payments_never_share_ids(a: UUID, b: UUID, index: int) -> None:
    if a != b:
        assert mint_id(PAYER, a, index) != mint_id(PAYER, b, index)


def test_payer_is_part_of_the_id() -> None:
    payment = uuid4()
    other = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    assert mint_id(PAYER, payment, 0) != mint_id(other, payment, 0)
