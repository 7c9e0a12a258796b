"""A private OpenLDAP server for the LDAP policy tests.

Its own configuration directory and mdb database in a temporary directory, the schema
the project ships (contrib/ldap/scanner-amavis.schema) next to OpenLDAP's core, cosine
and inetorgperson; entries are added with ldap3 bound as the directory's administrator
(slapd is the only package the tests need). The server runs in the foreground
(``-d 0``) as the test's child and is killed at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scanner.testing.postfix import free_port, wait_for_port

SLAPD = "/usr/sbin/slapd"
SCHEMA = Path(__file__).resolve().parent.parent / "contrib" / "ldap" / "scanner-amavis.schema"
SUFFIX = "dc=example,dc=test"
ADMIN = f"cn=admin,{SUFFIX}"
PASSWORD = "s3cret-bind"
PEOPLE = f"ou=people,{SUFFIX}"


def amavis_schema() -> Path | None:
    """amavis's own amavis.schema (every amavisAccount attribute, scanner's ignored ones
    too), from the amavisd-new package scripts/quickstart.sh unpacks, or installed."""
    release = os.environ.get("AMAVISD_RELEASE")
    places = [Path(release).parents[2] / "etc/ldap/schema/amavis.schema"] if release else []
    places += [Path(__file__).resolve().parent.parent / ".cache/amavisd/root/etc/ldap/"
               "schema/amavis.schema", Path("/etc/ldap/schema/amavis.schema")]
    return next((p for p in places if p.is_file()), None)


def slapd_missing() -> str | None:
    """Why no private slapd can run here, or None."""
    if not Path(SLAPD).exists():
        return "slapd is not installed (apt-get install slapd)"
    try:
        import ldap3  # noqa: F401
    except ImportError:
        return "ldap3 is not installed (pip install 'scanner[ldap]')"
    if not Path("/usr/lib/ldap/back_mdb.so").exists():
        return "slapd's mdb backend module is missing"
    return None


def make_pki(base: Path) -> dict[str, Path]:
    """A test CA and, signed by it, a server certificate for 127.0.0.1 (and no host
    name) and a client certificate, with the openssl command; EC keys (quick to make).
    Returns the PEM files by name: ca, server, server_key, client, client_key."""
    base.mkdir(parents=True, exist_ok=True)
    files = {name: base / f"{name}.pem" for name in
             ("ca", "ca_key", "server", "server_key", "client", "client_key")}

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", str(files["ca_key"]), "-out", str(files["ca"]),
        "-days", "2", "-subj", "/CN=scanner test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        csr, extfile = base / f"{name}.csr", base / f"{name}.ext"
        extfile.write_text(ext + "\n")
        run("req", *ec, "-keyout", str(files[f"{name}_key"]), "-out", str(csr),
            "-subj", f"/CN=scanner test {name}")
        run("x509", "-req", "-in", str(csr), "-CA", str(files["ca"]), "-CAkey",
            str(files["ca_key"]), "-CAcreateserial", "-out", str(files[name]), "-days", "2",
            "-extfile", str(extfile))
    return files


class Slapd:
    """One private slapd under ``base`` listening on 127.0.0.1 (``url``); with ``tls``
    (the files of :func:`make_pki`) it also takes StartTLS there and listens for
    ldaps:// on ``tls_url``; ``verify_client`` is slapd's TLSVerifyClient; ``schema``
    the amavisAccount schema (the project's, or amavis's own). Its log
    (``log_text()``) has slapd's connection statistics."""

    def __init__(self, base: Path, tls: dict[str, Path] | None = None,
                 verify_client: str = "never", schema: Path = SCHEMA) -> None:
        self.base = base
        self.schema = schema
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls = tls
        self.tls_port = free_port() if tls else 0
        self.tls_url = f"ldaps://127.0.0.1:{self.tls_port}" if tls else ""
        self.verify_client = verify_client
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Slapd:
        (self.base / "data").mkdir(parents=True)
        tls = [] if not self.tls else [
            f"TLSCACertificateFile {self.tls['ca']}",
            f"TLSCertificateFile {self.tls['server']}",
            f"TLSCertificateKeyFile {self.tls['server_key']}",
            f"TLSVerifyClient {self.verify_client}"]
        conf = self.base / "slapd.conf"
        conf.write_text("\n".join([
            *(f"include /etc/ldap/schema/{s}.schema" for s in
              ("core", "cosine", "inetorgperson")),
            f"include {self.schema}",
            f"pidfile {self.base / 'slapd.pid'}",
            "modulepath /usr/lib/ldap", "moduleload back_mdb", *tls,
            "database mdb", "maxsize 10485760",
            f'suffix "{SUFFIX}"', f'rootdn "{ADMIN}"', f"rootpw {PASSWORD}",
            f"directory {self.base / 'data'}",
            "access to * by * read", ""]))
        self._run()
        self.add(SUFFIX, objectClass=["dcObject", "organization"], o="test", dc="example")
        self.add(PEOPLE, objectClass="organizationalUnit", ou="people")
        return self

    def _run(self) -> None:
        listen = f"{self.url}/" + (f" {self.tls_url}/" if self.tls else "")
        with (self.base / "slapd.log").open("ab") as log:
            # -d 256: connection and operation statistics on stderr
            self._proc = subprocess.Popen([SLAPD, "-d", "256", "-h", listen, "-f",
                                           str(self.base / "slapd.conf")],
                                          stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, 15)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"slapd did not start: {self.log_text()}") from exc

    def restart(self) -> None:
        """Stop the server and start it again on the same ports with the same data."""
        self.stop()
        self._run()

    def log_text(self) -> str:
        return (self.base / "slapd.log").read_text(errors="replace")

    def connections(self) -> int:
        """Connections slapd has accepted so far (its ACCEPT log lines)."""
        return sum(" ACCEPT from " in line for line in self.log_text().splitlines())

    def add(self, dn: str, **attributes: str | list[str]) -> None:
        """Add one entry, bound as the administrator."""
        import ldap3

        conn = ldap3.Connection(ldap3.Server(self.url, get_info=ldap3.NONE), ADMIN, PASSWORD,
                                auto_bind=True, raise_exceptions=True)
        try:
            conn.add(dn, attributes=attributes)
        finally:
            conn.unbind()

    def replace(self, dn: str, **attributes: str) -> None:
        """Replace attribute values of one entry, bound as the administrator."""
        import ldap3

        conn = ldap3.Connection(ldap3.Server(self.url, get_info=ldap3.NONE), ADMIN, PASSWORD,
                                auto_bind=True, raise_exceptions=True)
        try:
            conn.modify(dn, {k: [(ldap3.MODIFY_REPLACE, [v])] for k, v in attributes.items()})
        finally:
            conn.unbind()

    def account(self, cn: str, mail: str | list[str], **attrs: str | list[str]) -> None:
        """An inetOrgPerson + amavisAccount entry ``cn=CN`` under ou=people."""
        self.add(f"cn={cn},{PEOPLE}", objectClass=["inetOrgPerson", "amavisAccount"],
                 cn=cn, sn="test", mail=mail, **attrs)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)


@contextlib.contextmanager
def private_slapd(**options: object) -> Iterator[Slapd]:
    """A :class:`Slapd` (``options`` as its own) started in a new temporary directory,
    killed and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="scanner-slapd-", dir="/tmp"))
    server = Slapd(base, **options).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
