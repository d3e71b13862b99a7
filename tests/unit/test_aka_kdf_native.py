"""The libcrypto SHA-1 compression used by the FIPS 186-2 PRF agrees with the pure-Python one, and the
PRF gives the published vectors with either (RFC 4186 Appendix A.5, FIPS 186-2 Appendix 3.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s2c.crypto import aka_kdf as kdf

H = bytes.fromhex
FIPS_XKEY = H("bd029bbe7f51960bcf9edb2b61f06f0feb5a38b6")
FIPS_OUT = H("2070b3223dba372fde1c0ffc7b2e3b498b2606143c6c18bacb0f6c55babb13788e20d737a3275116")
RFC4186_MK = H("e576d5ca332e9930018bf1baee2763c795b3c712")
RFC4186_K_AUT = H("25af1942efcbf4bc72b3943421f2a974")

native = pytest.mark.skipif(kdf._native_compress is None, reason="no libcrypto SHA1_Transform here")


@native
@given(st.tuples(*[st.integers(0, 0xFFFFFFFF)] * 5), st.binary(min_size=64, max_size=64))
def test_native_compress_equals_pure_python(state, block) -> None:
    assert kdf._native_compress(state, block) == kdf.sha1_compress(state, block)


@native
def test_native_compress_rejects_a_short_block() -> None:
    with pytest.raises(ValueError):
        kdf._native_compress(kdf._SHA1_IV, bytes(63))


@pytest.mark.parametrize("use_native", [True, False])
def test_prf_vectors_with_and_without_native(monkeypatch, use_native: bool) -> None:
    if use_native and kdf._native_compress is None:
        pytest.skip("no libcrypto SHA1_Transform here")
    if not use_native:
        monkeypatch.setattr(kdf, "_native_compress", None)
    assert kdf.fips186_2_prf(FIPS_XKEY, 40) == FIPS_OUT
    assert kdf.fips186_2_prf(RFC4186_MK, 160)[16:32] == RFC4186_K_AUT
