"""A throwaway PKI for tests: a CA made per test run, and leaf certificates it issues.

Server certificates carry DNS names (the real provider host names, so the gateway's SNI and SAN checks see
what they see in production); client certificates may carry a SPIFFE URI SAN (an Istio workload identity).
Nothing here is trusted outside the temporary directory it writes to."""

import datetime
import ipaddress
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _write_cert(path, cert):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


class Leaf:
    """A certificate and its key, as PEM files."""

    def __init__(self, cert_path, key_path):
        self.cert = cert_path
        self.key = key_path


class TestCA:
    """A self-signed CA. `ca.cert` is the PEM bundle to trust."""

    __test__ = False  # not a pytest class

    def __init__(self, directory=None, name="tollgate test CA"):
        self.dir = directory or tempfile.mkdtemp(prefix="tollgate-pki-")
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = os.path.join(self.dir, "ca.pem")
        _write_cert(self.cert, self._cert)
        self._count = 0

    def issue(self, dns_names=(), uri_sans=(), ip_addresses=(), client=False, server=True, cn=None):
        """A leaf certificate for the given names, signed by this CA; returns a `Leaf` (PEM file paths)."""
        self._count += 1
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns_names]
        sans += [x509.UniformResourceIdentifier(u) for u in uri_sans]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn or (list(dns_names) + list(uri_sans) + ["leaf"])[0][:64]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        base = os.path.join(self.dir, f"leaf{self._count}")
        _write_cert(base + ".pem", cert)
        _write_key(base + ".key", key)
        return Leaf(base + ".pem", base + ".key")
