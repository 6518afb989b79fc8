"""A test certificate authority made with ``openssl``: a CA, and certificates for 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import ssl
import subprocess
from pathlib import Path

__all__ = ["TestCA", "spki_sha256"]


def _openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


class TestCA:
    """A CA in ``directory``; :meth:`issue` signs server certificates for localhost."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certificate = directory / "ca.pem"
        self.key = directory / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.key), "-out", str(self.certificate), "-days", "2",
            "-subj", "/CN=pichat test CA",
        )  # fmt: skip

    def issue(self, name: str, dns: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A certificate (for 127.0.0.1, localhost and ``dns``, CN ``name``) and its key."""
        key = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        certificate = self.directory / f"{name}.pem"
        extensions = self.directory / f"{name}.ext"
        names = "".join(f", DNS:{host}" for host in dns)
        extensions.write_text(f"subjectAltName = IP:127.0.0.1, DNS:localhost{names}\n")
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.certificate),
            "-CAkey", str(self.key), "-CAcreateserial", "-out", str(certificate),
            "-days", "2", "-extfile", str(extensions),
        )  # fmt: skip
        return certificate, key

    @staticmethod
    def spki_hash(certificate: Path) -> str:
        """Base64 SHA-256 of the certificate's public key: what Chromium's
        ``--ignore-certificate-errors-spki-list`` trusts (that key only)."""
        key = subprocess.run(
            ["openssl", "x509", "-in", str(certificate), "-pubkey", "-noout"],
            check=True,
            capture_output=True,
        ).stdout
        der = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "der"],
            input=key,
            check=True,
            capture_output=True,
        ).stdout
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA (and checks the host name)."""
        return ssl.create_default_context(cafile=self.certificate)


def spki_sha256(certificate: Path) -> str:
    """The base64 SHA-256 of the certificate's SubjectPublicKeyInfo (DER).

    That is what Chromium's ``--ignore-certificate-errors-spki-list`` takes: trust for
    this one key, not a blanket ignore of certificate errors.
    """
    public_key = _openssl("x509", "-in", str(certificate), "-noout", "-pubkey")
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"],
        input=public_key,
        check=True,
        capture_output=True,
    ).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
