"""IKEv2 key derivation and DH groups against published vectors.

* NIST CAVS SP 800-135 IKEv2 KDF sample (ikev2.rsp, [SHA-1] COUNT=0; values as quoted in a public
  KDF crate's test suite): SKEYSEED, DKM, child DKM with and without g^ir(new), rekey SKEYSEED.
* RFC 5903 §8.1 ECP-256 and RFC 7748 §6.1 X25519 exchanges.
* RFC 3526 MODP-2048 prime compared with scapy's table (oracle).
"""

from __future__ import annotations

import pytest

from s2c.codec.ikev2 import DhGroup, EncrId, IntegId, PrfId
from s2c.crypto import dh
from s2c.crypto.ike_suites import (
    EspSuite, IkeSuite, IntegrityError, child_keymat, derive_ike_keys, rekey_skeyseed, seal, skeyseed, unseal,
    wireshark_decryption_line,
)
from s2c.crypto.prf import prf_plus

H = bytes.fromhex
NI = H("3651fef5c9c35e93")
NR = H("c09a8b90a3f04d59")
GIR = H("d084a30166a50fb7325c3960874a839449ef9741c2f4f947d0201dd8c1269273d79509f37e3ca3eb4fa2fe2a28254e28"
        "9cd3f34dad4eb4df1a07685a4b8a94fa61e2491f7598b3ce65547ff133b3f63d1ac4175eaa695033f3cedb026a6873a3"
        "6455172a8540b8a5d23a0143bed0390ee49b168269d75fffee9fb62be965993c")
GIR_NEW = H("52f00ab174c25d5b7139ae5ff4e8e9eddee5992d2e36adf8a559ffd90dab1442e4fbe429d320c0f33552a17d1557fa41"
            "ea70e8fb916c4fa27ed52b5f8ebd8461afa78f1159159a64055ac5f6319e29c28eae58cbc6847770f32c3fed1d047504"
            "84f854790f95e9ec01bc5bc461f24966462e359511329305038e94deb6dd42c2")
SPII = H("8e5c3ae507221684")
SPIR = H("b1f201bb155c3acd")
SKEYSEED = H("cd2e8050137832245f1dbacc6e4f0a92f94d45d6")
DKM = H("6f1b12cad3cbe097b35430356d869d54cddb0198ec859174d53ceb92dddedbe2436db69f60977c58fa63bbb667f8d369"
        "20b109baae8f6c61a9ac49feda01843225d080ec5539d5881a25521ffb2a0a91874a9c0a27fcc2d717eb8963a9e3a89c"
        "7ab264757284c28cf8c3ca40576f4220b052b1fb8e9ad60ba3c80557323331a8cbb89f20")
DKM_CHILD = H("4727dc0ef94eb326ce131cf282fb652faa638ad0ddae3786a11bcc0309876009f8c485de011ad962c5b1ca8a41ff8145"
              "445749079c5686e26ffebbc342f06981f3da745e11ca0976424d1f8caec623d59dc7186deb20a27b411d1dcb70a36544"
              "0bf7de905088b0692e8addc094e18d1939bdb67e89798ca6b239e2ccb81c2409dac0106c")
DKM_CHILD_DH = H("b109c21ad4c0797768c1cec9e63554681e48f224bca7f23c20c4ea7041983451e9aa1d5408656c8a975ff1b9d9a12c75"
                 "ffeb64bdecb30174664cccb4e14f1c377b7f6d1525af77c7092aac3e47f917ebae8297fb5539d2008ce830823a09cc19"
                 "7361d4a289c72745f6ce9fefe812be5bf55b3200fbb82e41a4a40877d3fe106db909707b")
SKEYSEED_REKEY = H("3b03bce748c96d5e8306918d2ff89b68f0648da3")


def test_nist_cavs_ikev2_kdf_sha1():
    sha1 = PrfId.PRF_HMAC_SHA1
    seed = skeyseed(sha1, NI, NR, GIR)
    assert seed == SKEYSEED
    assert prf_plus(sha1, seed, NI + NR + SPII + SPIR, len(DKM)) == DKM
    sk_d = DKM[:20]
    assert prf_plus(sha1, sk_d, NI + NR, len(DKM_CHILD)) == DKM_CHILD
    assert prf_plus(sha1, sk_d, GIR_NEW + NI + NR, len(DKM_CHILD_DH)) == DKM_CHILD_DH
    assert rekey_skeyseed(sha1, sk_d, GIR_NEW, NI, NR) == SKEYSEED_REKEY


def test_derive_ike_keys_splits_dkm_in_rfc_order():
    # AES-CBC-128 / HMAC-SHA1-96 / PRF-SHA1: SK_d 20, SK_a 20+20, SK_e 16+16, SK_p 20+20 = 132 = len(DKM)
    suite = IkeSuite(EncrId.ENCR_AES_CBC, 128, PrfId.PRF_HMAC_SHA1, IntegId.AUTH_HMAC_SHA1_96, DhGroup.MODP_2048)
    k = derive_ike_keys(suite, SKEYSEED, NI, NR, SPII, SPIR)
    assert k.sk_d + k.sk_ai + k.sk_ar + k.sk_ei + k.sk_er + k.sk_pi + k.sk_pr == DKM
    assert (len(k.sk_d), len(k.sk_ai), len(k.sk_ei), len(k.sk_pr)) == (20, 20, 16, 20)


def test_child_keymat_order_and_gcm_salt():
    suite = EspSuite(EncrId.ENCR_AES_CBC, 128, IntegId.AUTH_HMAC_SHA1_96)
    i2r, r2i = child_keymat(PrfId.PRF_HMAC_SHA1, DKM[:20], suite, NI, NR)
    assert i2r.encr_key + i2r.integ_key + r2i.encr_key + r2i.integ_key == DKM_CHILD[:72]
    gcm = EspSuite(EncrId.ENCR_AES_GCM_16, 256)
    i2r, r2i = child_keymat(PrfId.PRF_HMAC_SHA1, DKM[:20], gcm, NI, NR, GIR_NEW)
    assert i2r.encr_key + i2r.salt + r2i.encr_key + r2i.salt == DKM_CHILD_DH[:72]
    assert len(i2r.salt) == 4 and i2r.integ == IntegId.NONE and i2r.icv_len == 16


class _Fixed:
    def __init__(self, data: bytes):
        self.data = data

    def __call__(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        assert len(out) == n
        return out


def test_rfc5903_ecp256_vector():
    i = H("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433")
    r = H("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53")
    gi = H("DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
           "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3")
    gr = H("D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
           "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB")
    girx = H("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE")
    a = dh.generate(DhGroup.ECP_256, _Fixed(i))
    b = dh.generate(DhGroup.ECP_256, _Fixed(r))
    assert a.public == gi and b.public == gr
    assert a.shared_secret(gr) == girx == b.shared_secret(gi)


def test_rfc7748_x25519_vector():
    a = dh.generate(DhGroup.CURVE25519, _Fixed(H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")))
    b = dh.generate(DhGroup.CURVE25519, _Fixed(H("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")))
    assert a.public == H("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert b.public == H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = H("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert a.shared_secret(b.public) == shared == b.shared_secret(a.public)
    with pytest.raises(dh.DhError):
        a.shared_secret(bytes(32))  # low-order point -> all-zero secret


def test_modp2048_prime_matches_scapy_and_exchange_agrees():
    from scapy.layers.tls.crypto.groups import modp2048

    assert dh.MODP_2048_P == modp2048.m and modp2048.g == 2
    import os

    a = dh.generate(DhGroup.MODP_2048, os.urandom)
    b = dh.generate(DhGroup.MODP_2048, os.urandom)
    assert len(a.public) == 256 == dh.ke_length(DhGroup.MODP_2048)
    assert a.shared_secret(b.public) == b.shared_secret(a.public)
    x = H("11" * 32)
    k = dh.generate(DhGroup.MODP_2048, _Fixed(x))
    xi = int.from_bytes(x, "big") | (1 << 255)
    assert k.public == pow(2, xi, modp2048.m).to_bytes(256, "big")  # independent pow() check
    assert k.shared_secret(b.public) == pow(int.from_bytes(b.public, "big"), xi, modp2048.m).to_bytes(256, "big")
    with pytest.raises(dh.DhError):
        a.shared_secret((1).to_bytes(256, "big"))
    with pytest.raises(dh.DhError):
        a.shared_secret(b"\x01" * 10)


def test_ecp_rejects_point_not_on_curve():
    import os

    a = dh.generate(DhGroup.ECP_256, os.urandom)
    with pytest.raises(dh.DhError):
        a.shared_secret(b"\x01" * 64)


@pytest.mark.parametrize("suite", [
    IkeSuite(EncrId.ENCR_AES_CBC, 128, PrfId.PRF_HMAC_SHA2_256, IntegId.AUTH_HMAC_SHA2_256_128, DhGroup.ECP_256),
    IkeSuite(EncrId.ENCR_AES_CBC, 256, PrfId.PRF_HMAC_SHA2_256, IntegId.AUTH_HMAC_SHA2_256_128, DhGroup.ECP_256),
    IkeSuite(EncrId.ENCR_AES_GCM_16, 128, PrfId.PRF_HMAC_SHA2_256, IntegId.NONE, DhGroup.CURVE25519),
    IkeSuite(EncrId.ENCR_AES_GCM_16, 256, PrfId.PRF_HMAC_SHA2_512, IntegId.NONE, DhGroup.MODP_2048),
])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100])
def test_seal_unseal_round_trip_and_tamper(suite, size):
    import os

    keys = derive_ike_keys(suite, os.urandom(32), NI, NR, SPII, SPIR)
    aad = b"h" * 32
    pt = os.urandom(size)
    body = seal(suite, keys.sk_ei, keys.sk_ai, aad, pt, os.urandom)
    assert len(body) == suite.sk_body_len(size)
    assert unseal(suite, keys.sk_ei, keys.sk_ai, aad, body) == pt
    for bad_aad, bad_body in ((b"x" + aad[1:], body), (aad, body[:-1] + bytes([body[-1] ^ 1])),
                              (aad, body[:10] + bytes([body[10] ^ 0x80]) + body[11:])):
        with pytest.raises(IntegrityError):
            unseal(suite, keys.sk_ei, keys.sk_ai, bad_aad, bad_body)
    with pytest.raises(IntegrityError):
        unseal(suite, keys.sk_er, keys.sk_ar, aad, body)  # wrong direction keys


def test_wireshark_line_format():
    suite = IkeSuite(EncrId.ENCR_AES_CBC, 128, PrfId.PRF_HMAC_SHA2_256, IntegId.AUTH_HMAC_SHA2_256_128, DhGroup.ECP_256)
    keys = derive_ike_keys(suite, b"k" * 32, NI, NR, SPII, SPIR)
    line = wireshark_decryption_line(suite, SPII, SPIR, keys)
    f = line.split(",")
    assert f[0] == SPII.hex() and f[1] == SPIR.hex() and f[2] == keys.sk_ei.hex()
    assert f[4] == '"AES-CBC-128 [RFC3602]"' and f[7] == '"HMAC_SHA2_256_128 [RFC4868]"'


def test_nist_cavs_ikev2_kdf_sha256():
    """NIST SP 800-135 IKEv2 sample, [SHA-256] (values as carried in NSS's ike_sha256_vectors.h)."""
    sha256 = PrfId.PRF_HMAC_SHA2_256
    ni, nr = H("3f302be1abcb28e1"), H("8c332ee006064c9b")
    spii, spir = H("40dac39e1e1a8640"), H("8619a1cf9a6e4c07")
    gir = H("0f4d257d7a58fc4545c7d7a88119eee5d5c9690c5b4c989171d3abbfd99d1d29")
    gir_new = H("25f3b12d6f282739256e39bf54eda53b60ffcf379bb7bcc90c27b4c4c578616c")
    seed = skeyseed(sha256, ni, nr, gir)
    assert seed == H("5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe")
    dkm = prf_plus(sha256, seed, ni + nr + spii + spir, 132)
    assert dkm == H("0b137d669b0947d7d026d593f0305ad401ff0c471357d695778a9c7f4b4869ece98aca531188d16041b3bb936d2dbb3b"
                    "4993a6e768a809160de45d0283f273a6cdf6854379e31be72b8d3d1fa990cf9c5b015ca9f918a7df6253c958114a09d4"
                    "e1c19bdcd4db14b29d98db1a74ad405c588662c14a04d0d36aa4ab55e90f8986d12d4aad")
    assert rekey_skeyseed(sha256, dkm[:32], gir_new, ni, nr) == H(
        "2d63f6debc92048b4fef3889c4c99ca67d6496e0fac14a2bca9a2d6566ff2398")
