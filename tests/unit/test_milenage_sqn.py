"""SQN = SEQ || IND arithmetic at the HE/AuC and the USIM (TS 33.102 Annex C)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s2c.crypto import sqn as S


def test_split_join() -> None:
    v = S.join_sqn(0x123456, 7)
    assert S.split_sqn(v) == (0x123456, 7)
    assert S.split_sqn(S.sqn_to_bytes(v)) == (0x123456, 7)
    assert S.sqn_from_bytes(S.sqn_to_bytes(v)) == v
    with pytest.raises(ValueError):
        S.join_sqn(0, 32)
    with pytest.raises(ValueError):
        S.sqn_to_bytes(1 << 48)


def test_next_sqn_increments_seq_and_cycles_ind() -> None:
    sqn = 0
    seen_ind = []
    for i in range(1, 70):
        sqn = S.next_sqn(sqn)
        seq, ind = S.split_sqn(sqn)
        assert seq == i
        seen_ind.append(ind)
    assert seen_ind[:3] == [1, 2, 3]
    assert seen_ind[31] == 0  # wraps mod a = 32
    with pytest.raises(ValueError):
        S.next_sqn(S.join_sqn(S.SEQ_MAX, 0))


def test_he_sqns_are_accepted_by_usim_in_order() -> None:
    usim = S.SqnWindow()
    he = 0
    for _ in range(100):
        he = S.next_sqn(he)
        assert usim.accept(he).ok
    assert usim.sqn_ms == he


def test_replay_rejected_and_reports_highest_sqn_ms() -> None:
    usim = S.SqnWindow()
    first = S.next_sqn(0)
    second = S.next_sqn(first)
    assert usim.accept(first).ok
    assert usim.accept(second).ok
    r = usim.accept(first)
    assert r.verdict is S.SqnVerdict.REPLAYED
    assert r.sqn_ms == second


def test_out_of_order_within_array_is_accepted() -> None:
    # Annex C.2.2: vectors with distinct IND may be used out of order.
    usim = S.SqnWindow()
    a, b, c = S.join_sqn(5, 1), S.join_sqn(6, 2), S.join_sqn(7, 3)
    assert usim.accept(c).ok
    assert usim.accept(a).ok
    assert usim.accept(b).ok
    assert not usim.accept(b).ok


def test_delta_limit() -> None:
    usim = S.SqnWindow.starting_at(S.join_sqn(1000, 4))
    assert usim.check(S.join_sqn(1000 + S.DELTA, 5)).ok
    r = usim.check(S.join_sqn(1000 + S.DELTA + 1, 5))
    assert r.verdict is S.SqnVerdict.OUT_OF_RANGE
    assert r.sqn_ms == S.join_sqn(1000, 4)


def test_limit_l() -> None:
    usim = S.SqnWindow(limit=10)
    assert usim.accept(S.join_sqn(1000, 0)).ok
    assert usim.check(S.join_sqn(991, 3)).ok
    assert usim.check(S.join_sqn(990, 3)).verdict is S.SqnVerdict.OUT_OF_RANGE


def test_resync_resets_he_when_behind() -> None:
    usim = S.SqnWindow.starting_at(S.join_sqn(5000, 9))
    he = S.join_sqn(10, 3)
    assert not usim.check(S.next_sqn(he)).ok
    he2 = S.resync_sqn_he(he, usim.sqn_ms)
    assert he2 == usim.sqn_ms
    assert usim.accept(S.next_sqn(he2)).ok


def test_resync_keeps_he_when_next_would_be_accepted() -> None:
    he = S.join_sqn(5000, 9)
    assert S.resync_sqn_he(he, S.join_sqn(4000, 2)) == he
    # HE far ahead of the USIM (beyond delta): must reset
    assert S.resync_sqn_he(S.join_sqn(4000 + S.DELTA + 5, 0), S.join_sqn(4000, 2)) == S.join_sqn(4000, 2)


@given(st.integers(0, S.SQN_MAX - (1 << 10)), st.integers(0, S.SQN_MAX - (1 << 10)))
def test_resync_always_converges(he: int, ms: int) -> None:
    usim = S.SqnWindow.starting_at(ms)
    new_he = S.resync_sqn_he(he, usim.sqn_ms)
    assert usim.accept(S.next_sqn(new_he)).ok
