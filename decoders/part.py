"""One node of a message's part tree, with the amavis-style path rules and logs use.

Part 1 is the whole message; the others follow depth first. ``level`` is the position in
the tree (``(1, 2, 3)`` is rendered ``L=1/2/3``: third child of the second child of the
message). ``path_string()`` gives amavis's namepath, e.g.
``P=p003,L=1/2,M=application/zip,T=zip,N=foto.zip``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO

from decoders.context import Blob
from decoders.html_text import html_to_text


@dataclass(eq=False)
class Part:
    """A decoded part: metadata plus access to its bytes (memory or private spool file)."""

    index: int
    level: tuple[int, ...]
    blob: Blob
    declared_type: str | None = None
    detected_type: str | None = None
    magic: str | None = None
    name: str | None = None
    # other names the container declares for these bytes (Content-Type name= against
    # Content-Disposition filename=, a zip's local header against its central directory):
    # readers differ on which one they use, so banned-name rules look at every one
    aliases: tuple[str, ...] = ()
    parent: int | None = None
    flags: set[str] = field(default_factory=set)
    plain_text: str | None = None
    html: str | None = None
    is_leaf: bool = True
    headers: list[tuple[str, str]] = field(default_factory=list)
    decoder: str | None = None
    # what consumers derive from the bytes and share, by key (the rules' rendered HTML,
    # which the URI blocklist check reads too): computed once per part and message
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def text(self) -> str | None:
        """The readable text of a text leaf: plain text as is, HTML rendered (once, on demand).

        Rendering is deferred because most consumers (rules, the classifier) render HTML
        their own way; only those that want this generic text pay for it.
        """
        if self.plain_text is None and self.html is not None:
            self.plain_text = html_to_text(self.html)
            self.html = None
        return self.plain_text

    @property
    def size(self) -> int:
        return self.blob.size

    @property
    def sha256(self) -> str:
        return self.blob.sha256

    @property
    def depth(self) -> int:
        return len(self.level)

    @property
    def spooled_path(self) -> str | None:
        """The file holding the bytes when spooled, else None."""
        return self.blob.path

    def data(self) -> bytes:
        """The part's bytes (read from the spool file when it was spooled)."""
        return self.blob.read()

    def open(self) -> BinaryIO:
        """A fresh binary stream over the part's bytes; the caller closes it."""
        return self.blob.open()

    def label(self) -> str:
        return f"p{self.index:03d}"

    def path_string(self) -> str:
        """amavis namepath: ``P=p003,L=1/2,M=application/zip,T=zip,N=foto.zip``."""
        items = [f"P={self.label()}", "L=" + "/".join(str(n) for n in self.level)]
        if self.declared_type:
            items.append(f"M={self.declared_type}")
        if self.detected_type:
            items.append(f"T={self.detected_type}")
        if self.name:
            items.append(f"N={self.name}")
        return ",".join(items)
