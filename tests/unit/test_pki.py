"""s2c.pki: the CA and PDN GW certificate verify and carry what IKE peers look for."""

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from s2c import pki


def _verify(ca: x509.Certificate, cert: x509.Certificate) -> None:
    key = ca.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def test_ensure_pki_rsa_and_idempotent(tmp_path):
    paths = pki.ensure_pki(tmp_path, fqdn="pdngw.example.test")
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(paths.cert("pdngw").read_bytes())
    _verify(ca, cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pdngw.example.test"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert oct(paths.key("pdngw").stat().st_mode & 0o777) == "0o600"
    before = paths.cert("pdngw").read_bytes()
    pki.ensure_pki(tmp_path, fqdn="pdngw.example.test")
    assert paths.cert("pdngw").read_bytes() == before  # not reissued


def test_ecdsa_and_cli(tmp_path, capsys):
    from s2c.cli import main

    assert main(["pki", "init", "--dir", str(tmp_path), "--key", "ecdsa"]) == 0
    paths = pki.PkiPaths(tmp_path)
    cert = x509.load_pem_x509_certificate(paths.cert("pdngw").read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    _verify(x509.load_pem_x509_certificate(paths.ca_cert.read_bytes()), cert)
    assert main(["pki", "issue", "ue1", "--fqdn", "ue1.example.test", "--dir", str(tmp_path)]) == 0
    assert paths.cert("ue1").exists()
