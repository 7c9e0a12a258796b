"""A private OpenLDAP server for the LDAP policy tests.

Its own configuration directory and mdb database in a temporary directory, the schema
the project ships (contrib/ldap/scanner-amavis.schema) next to OpenLDAP's core, cosine
and inetorgperson; entries are added with ldap3 bound as the directory's administrator
(slapd is the only package the tests need). The server runs in the foreground
(``-d 0``) as the test's child and is killed at teardown.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from scanner.testing.postfix import free_port, wait_for_port

SLAPD = "/usr/sbin/slapd"
SCHEMA = Path(__file__).resolve().parent.parent / "contrib" / "ldap" / "scanner-amavis.schema"
SUFFIX = "dc=example,dc=test"
ADMIN = f"cn=admin,{SUFFIX}"
PASSWORD = "s3cret-bind"
PEOPLE = f"ou=people,{SUFFIX}"


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


class Slapd:
    """One private slapd under ``base`` listening on 127.0.0.1."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Slapd:
        (self.base / "data").mkdir(parents=True)
        conf = self.base / "slapd.conf"
        conf.write_text("\n".join([
            *(f"include /etc/ldap/schema/{s}.schema" for s in
              ("core", "cosine", "inetorgperson")),
            f"include {SCHEMA}",
            f"pidfile {self.base / 'slapd.pid'}",
            "modulepath /usr/lib/ldap", "moduleload back_mdb",
            "database mdb", "maxsize 10485760",
            f'suffix "{SUFFIX}"', f'rootdn "{ADMIN}"', f"rootpw {PASSWORD}",
            f"directory {self.base / 'data'}",
            "access to * by * read", ""]))
        with (self.base / "slapd.log").open("wb") as log:
            self._proc = subprocess.Popen([SLAPD, "-d", "0", "-h", f"{self.url}/", "-f",
                                           str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, 15)
        except Exception as exc:
            self.stop()
            raise RuntimeError("slapd did not start: " + (self.base / "slapd.log").read_text(
                errors="replace")) from exc
        self.add(SUFFIX, objectClass=["dcObject", "organization"], o="test", dc="example")
        self.add(PEOPLE, objectClass="organizationalUnit", ou="people")
        return self

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
