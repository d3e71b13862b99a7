"""AUTH payload computation and checking (RFC 7296 §2.15, §2.16; RFC 7427 signatures; RFC 4754 ECDSA)."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import ExtensionOID, NameOID

from s2c.codec.ikev2 import AuthMethod, AuthPayload, HashAlgorithm, IdPayload, IdType
from s2c.crypto.prf import prf

KEY_PAD = b"Key Pad for IKEv2"

# RFC 7427 Appendix A: DER AlgorithmIdentifier values
_ALG_IDS = {
    ("rsa", HashAlgorithm.SHA2_256): bytes.fromhex("300d06092a864886f70d01010b0500"),
    ("rsa", HashAlgorithm.SHA2_384): bytes.fromhex("300d06092a864886f70d01010c0500"),
    ("rsa", HashAlgorithm.SHA2_512): bytes.fromhex("300d06092a864886f70d01010d0500"),
    ("ecdsa", HashAlgorithm.SHA2_256): bytes.fromhex("300a06082a8648ce3d040302"),
    ("ecdsa", HashAlgorithm.SHA2_384): bytes.fromhex("300a06082a8648ce3d040303"),
    ("ecdsa", HashAlgorithm.SHA2_512): bytes.fromhex("300a06082a8648ce3d040304"),
}
_ALG_BY_DER = {v: k for k, v in _ALG_IDS.items()}
_HASHES = {HashAlgorithm.SHA1: hashes.SHA1, HashAlgorithm.SHA2_256: hashes.SHA256,
           HashAlgorithm.SHA2_384: hashes.SHA384, HashAlgorithm.SHA2_512: hashes.SHA512}


class AuthError(ValueError):
    """An AUTH payload or certificate could not be verified."""


def signed_octets(first_message: bytes, peer_nonce: bytes, prf_id: int, sk_p: bytes, id_payload: IdPayload) -> bytes:
    """<Initiator|Responder>SignedOctets = RealMessage | NonceData | prf(SK_p, RestOfIDPayload) (§2.15)."""
    return first_message + peer_nonce + prf(prf_id, sk_p, id_payload.encode_body())


def shared_key_auth(prf_id: int, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15; MSK for EAP §2.16)."""
    return prf(prf_id, prf(prf_id, secret, KEY_PAD), octets)


def _key_kind(key) -> str:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa"
    raise AuthError(f"unsupported key type {type(key).__name__}")


def sign(method: int, private_key, octets: bytes, peer_hashes: tuple[int, ...] | list[int] = ()) -> AuthPayload:
    """Sign the octets with method 1 (RSA, SHA-1), 9 (ECDSA P-256 r|s) or 14 (RFC 7427)."""
    kind = _key_kind(private_key)
    if method == AuthMethod.RSA_DIGITAL_SIGNATURE:
        if kind != "rsa":
            raise AuthError("method 1 needs an RSA key")
        return AuthPayload(method, private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1()))
    if method == AuthMethod.ECDSA_SHA256_P256:
        der = private_key.sign(octets, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return AuthPayload(method, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    if method == AuthMethod.DIGITAL_SIGNATURE:
        h = HashAlgorithm.SHA2_256
        for cand in (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512):
            if not peer_hashes or cand in peer_hashes:
                h = cand
                break
        alg = _ALG_IDS[(kind, h)]
        if kind == "rsa":
            sig = private_key.sign(octets, padding.PKCS1v15(), _HASHES[h]())
        else:
            sig = private_key.sign(octets, ec.ECDSA(_HASHES[h]()))
        return AuthPayload(method, bytes([len(alg)]) + alg + sig)
    raise AuthError(f"cannot sign with AUTH method {method}")


def verify(auth: AuthPayload, public_key, octets: bytes) -> None:
    """Raise AuthError unless the signature in ``auth`` is valid for the octets."""
    kind = _key_kind(public_key)
    try:
        if auth.method == AuthMethod.RSA_DIGITAL_SIGNATURE and kind == "rsa":
            public_key.verify(auth.data, octets, padding.PKCS1v15(), hashes.SHA1())
            return
        if auth.method == AuthMethod.ECDSA_SHA256_P256 and kind == "ecdsa":
            if len(auth.data) != 64:
                raise AuthError("bad ECDSA P-256 signature length")
            der = encode_dss_signature(int.from_bytes(auth.data[:32], "big"), int.from_bytes(auth.data[32:], "big"))
            public_key.verify(der, octets, ec.ECDSA(hashes.SHA256()))
            return
        if auth.method == AuthMethod.DIGITAL_SIGNATURE:
            if not auth.data:
                raise AuthError("empty signature")
            n = auth.data[0]
            alg = auth.data[1 : 1 + n]
            sig = auth.data[1 + n :]
            try:
                akind, h = _ALG_BY_DER[alg]
            except KeyError:
                raise AuthError(f"unsupported signature algorithm {alg.hex()}") from None
            if akind != kind:
                raise AuthError("signature algorithm does not match the certificate key")
            if kind == "rsa":
                public_key.verify(sig, octets, padding.PKCS1v15(), _HASHES[h]())
            else:
                public_key.verify(sig, octets, ec.ECDSA(_HASHES[h]()))
            return
    except InvalidSignature:
        raise AuthError("signature does not verify") from None
    raise AuthError(f"AUTH method {auth.method} not usable with a {kind} key")


def check_certificate(cert: x509.Certificate, trusted: tuple[x509.Certificate, ...]) -> None:
    """Accept a pinned certificate or one directly issued by a trusted CA (no path building, no CRLs)."""
    for t in trusted:
        if t == cert:
            return
    for t in trusted:
        if t.subject == cert.issuer:
            try:
                cert.verify_directly_issued_by(t)
                return
            except (ValueError, TypeError, InvalidSignature):
                continue
    raise AuthError(f"certificate {cert.subject.rfc4514_string()} is not trusted")


def check_id_matches_cert(id_payload: IdPayload, cert: x509.Certificate) -> None:
    """The peer ID must name the certificate (SAN dNSName/rfc822Name/iPAddress or subject CN)."""
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        san = None
    text = id_payload.data.decode("utf-8", "replace")
    if id_payload.id_type == IdType.ID_FQDN and san is not None:
        if text.lower() in [d.lower() for d in san.get_values_for_type(x509.DNSName)]:
            return
    elif id_payload.id_type == IdType.ID_RFC822_ADDR and san is not None:
        if text.lower() in [d.lower() for d in san.get_values_for_type(x509.RFC822Name)]:
            return
    elif id_payload.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR) and san is not None:
        import ipaddress

        try:
            if ipaddress.ip_address(id_payload.data) in san.get_values_for_type(x509.IPAddress):
                return
        except ValueError:
            pass
    elif id_payload.id_type == IdType.ID_DER_ASN1_DN:
        if cert.subject.public_bytes() == id_payload.data:
            return
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if text in cns:
        return
    raise AuthError(f"identity {text!r} does not match the certificate")
