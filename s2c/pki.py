"""A small local PKI for the testbed: a CA and the PDN GW's certificate (RFC 5280 profile).

The PDN GW authenticates to the UE with a certificate in IKE_AUTH (TS 33.402 §8.2.2); the UE trusts
the CA. ``s2c pki init`` writes PEM files; ``ensure_pki(dir, ...)`` is used by the lab so a run always
has credentials. Keys are RSA-2048 by default (AUTH method 1, understood by every IKEv2 peer) or
ECDSA P-256 (``--key ecdsa``).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_PDNGW_FQDN = "pdngw.epc.mnc001.mcc001.3gppnetwork.org"
IKE_INTERMEDIATE_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.17")  # id-kp-ipsecIKE, RFC 4945 §5.1.3.12


@dataclass(frozen=True)
class PkiPaths:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"


def _new_key(kind: str):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {kind!r} (rsa or ecdsa)")


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(paths: PkiPaths, key_type: str = "rsa", days: int = 3650) -> None:
    key = _new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s2c-testbed"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "s2c-testbed CA")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    paths.root.mkdir(parents=True, exist_ok=True)
    _write_key(paths.ca_key, key)
    _write_cert(paths.ca_cert, cert)


def issue(paths: PkiPaths, name: str, fqdn: str, addresses: list[str] | None = None,
          key_type: str = "rsa", days: int = 825) -> None:
    """Issue an end-entity certificate with SAN dNSName=fqdn (+ IP addresses) for IKE."""
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    key = _new_key(key_type)
    now = _dt.datetime.now(_dt.timezone.utc)
    san: list[x509.GeneralName] = [x509.DNSName(fqdn)]
    san += [x509.IPAddress(ipaddress.ip_address(a)) for a in (addresses or [])]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "s2c-testbed"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, IKE_INTERMEDIATE_EKU]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.key(name), key)
    _write_cert(paths.cert(name), cert)


def ensure_pki(root: str | Path, fqdn: str = DEFAULT_PDNGW_FQDN, key_type: str = "rsa") -> PkiPaths:
    """Create the CA and the ``pdngw`` certificate under ``root`` unless they already exist."""
    paths = PkiPaths(Path(root))
    if not (paths.ca_cert.exists() and paths.ca_key.exists()):
        make_ca(paths, key_type)
    if not (paths.cert("pdngw").exists() and paths.key("pdngw").exists()):
        issue(paths, "pdngw", fqdn, key_type=key_type)
    return paths


def register(sub) -> None:
    p = sub.add_parser("pki", help="local CA and PDN GW certificate")
    psub = p.add_subparsers(dest="pki_command", metavar="ACTION")
    init = psub.add_parser("init", help="create a CA and the PDN GW certificate")
    init.add_argument("--dir", default="var/pki", help="output folder (default var/pki)")
    init.add_argument("--fqdn", default=DEFAULT_PDNGW_FQDN, help="PDN GW FQDN (IDr, SAN)")
    init.add_argument("--key", choices=["rsa", "ecdsa"], default="rsa")
    init.add_argument("--force", action="store_true", help="replace existing files")
    init.set_defaults(func=_cmd_init)
    iss = psub.add_parser("issue", help="issue another end-entity certificate from the CA")
    iss.add_argument("name")
    iss.add_argument("--fqdn", required=True)
    iss.add_argument("--dir", default="var/pki")
    iss.add_argument("--key", choices=["rsa", "ecdsa"], default="rsa")
    iss.set_defaults(func=_cmd_issue)


def _cmd_init(args) -> int:
    paths = PkiPaths(Path(args.dir))
    if args.force:
        for f in (paths.ca_cert, paths.ca_key, paths.cert("pdngw"), paths.key("pdngw")):
            f.unlink(missing_ok=True)
    ensure_pki(paths.root, args.fqdn, args.key)
    print(f"CA: {paths.ca_cert}\nPDN GW: {paths.cert('pdngw')} (key {paths.key('pdngw')}, {args.fqdn})")
    return 0


def _cmd_issue(args) -> int:
    paths = PkiPaths(Path(args.dir))
    if not paths.ca_key.exists():
        print(f"{paths.ca_key}: no CA here; run 's2c pki init --dir {args.dir}' first")
        return 1
    issue(paths, args.name, args.fqdn, key_type=args.key)
    print(f"{paths.cert(args.name)} ({args.fqdn})")
    return 0
