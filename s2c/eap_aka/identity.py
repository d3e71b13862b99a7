"""Permanent NAIs for EAP-AKA/AKA' (TS 23.003 §19.3.2, RFC 4187 §4.1.1.6, RFC 5448 §3)."""

from __future__ import annotations

import re

from s2c.codec.eap import EapType

__all__ = ["imsi_from_nai", "permanent_nai", "prefix_for"]

_PREFIX = {EapType.AKA: "0", EapType.AKA_PRIME: "6"}
_NAI = re.compile(r"^([06])(\d{6,15})@nai\.epc\.mnc(\d{3})\.mcc(\d{3})\.3gppnetwork\.org$")


def prefix_for(method: int) -> str:
    """Leading digit of a permanent identity: '0' EAP-AKA, '6' EAP-AKA'."""
    try:
        return _PREFIX[EapType(method)]
    except (ValueError, KeyError):
        raise ValueError(f"not an AKA method: {method}") from None


def permanent_nai(imsi: str, mnc_len: int = 2, method: int = EapType.AKA) -> str:
    """``0<IMSI>@nai.epc.mnc<MNC>.mcc<MCC>.3gppnetwork.org`` (MNC zero-padded to 3 digits)."""
    if not imsi.isdigit() or not 6 <= len(imsi) <= 15:
        raise ValueError("IMSI must be 6..15 digits")
    if mnc_len not in (2, 3):
        raise ValueError("mnc_len must be 2 or 3")
    mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_len]
    return f"{prefix_for(method)}{imsi}@nai.epc.mnc{int(mnc):03d}.mcc{mcc}.3gppnetwork.org"


def imsi_from_nai(nai: str | bytes, method: int | None = None) -> str | None:
    """IMSI of a permanent NAI, or None if ``nai`` is not one (or has another method's prefix).

    The realm's MCC and MNC (2 digits zero-padded, or 3) must match the IMSI's leading digits.
    """
    if isinstance(nai, bytes):
        try:
            nai = nai.decode("ascii")
        except UnicodeDecodeError:
            return None
    m = _NAI.match(nai)
    if m is None:
        return None
    prefix, imsi, mnc, mcc = m.groups()
    if method is not None and prefix != prefix_for(method):
        return None
    if imsi[:3] != mcc or mnc not in ("0" + imsi[3:5], imsi[3:6]):
        return None
    return imsi
