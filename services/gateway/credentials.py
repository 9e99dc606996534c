"""Who may send what: credentials from a YAML file, each an API key (stored as its SHA-256) or a
client certificate subject, bound to ``source`` prefixes and event ``type`` patterns.

API keys are random tokens of at least 128 bits (``tradepulse gateway-key`` makes them), so a plain
SHA-256 is enough to store them: there is nothing to guess by brute force, unlike a password, and
the comparison is constant-time. The file never holds a key, and no log line or error names one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.contract.envelope import path_safe as _path_safe

__all__ = ["Credential", "CredentialsError", "Grants", "hash_key", "load", "new_key"]

KEY_PREFIX = "tpk_"


class CredentialsError(ValueError):
    """The credentials file cannot be used; the message names the file and the entry."""


class Credential(BaseModel):
    """One producer: its name (in logs and metrics), how it proves who it is, what it may send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    key_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None
    certificate_subject: Annotated[str | None, Field(min_length=1)] = None
    """The client certificate's subject common name, when the gateway terminates TLS itself."""
    sources: Annotated[tuple[str, ...], Field(min_length=1)]
    """CloudEvent ``source`` prefixes this producer may use, e.g. ``/singlewindow/``."""
    types: Annotated[tuple[str, ...], Field(min_length=1)]
    """Event ``type`` patterns (shell style), e.g. ``customs.*``."""
    rate_per_s: Annotated[float, Field(gt=0)] = 500.0
    burst: Annotated[int, Field(gt=0)] = 1000

    def allows(self, source: str, type_: str) -> str | None:
        """None when this producer may send an event of ``type_`` from ``source``; else which of
        the two its grant does not cover. Sources are matched as URI paths (contract section 1): a
        grant ``/singlewindow/`` covers ``/singlewindow`` and what lies under it, never
        ``/singlewindowX`` nor ``/singlewindow/../etax`` (a source with a dot segment or a
        percent-encoded ``.`` or ``/`` is covered by no grant)."""
        if not any(_under(source, prefix) for prefix in self.sources):
            return "source"
        if not any(fnmatchcase(type_, pattern) for pattern in self.types):
            return "type"
        return None


def _under(source: str, prefix: str) -> bool:
    """Whether the path ``source`` is ``prefix`` or lies under it, segment by segment."""
    try:
        _path_safe(source)
    except ValueError:
        return False
    base = prefix.rstrip("/")
    return source == base or source.startswith(base + "/")


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credentials: Sequence[Credential]


@dataclass(frozen=True, slots=True)
class Grants:
    """The loaded credentials, looked up by key hash or certificate subject."""

    by_key: dict[str, Credential]
    by_subject: dict[str, Credential]
    source: Path

    def for_key(self, key: str) -> Credential | None:
        digest = hash_key(key)
        found = None
        for stored, credential in self.by_key.items():  # every entry, so timing tells nothing
            if hmac.compare_digest(stored, digest):
                found = credential
        return found

    def for_subject(self, subject: str) -> Credential | None:
        return self.by_subject.get(subject)

    def __len__(self) -> int:
        return len({c.name for c in (*self.by_key.values(), *self.by_subject.values())})


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A new API key and the hash to put in the credentials file."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    return key, hash_key(key)


def load(path: Path) -> Grants:
    """Read and check the credentials file: every entry valid, names unique, each entry with a key
    hash or a certificate subject, no key or subject used twice."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{path}: cannot read the credentials file ({exc.strerror or exc})"
        raise CredentialsError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"{path}: not YAML ({str(exc).splitlines()[0]})"
        raise CredentialsError(msg) from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = f"{path}: {where}: {first['msg']}"  # pydantic's message names the rule, not the value
        raise CredentialsError(msg) from None
    by_key: dict[str, Credential] = {}
    by_subject: dict[str, Credential] = {}
    names: set[str] = set()
    for i, c in enumerate(parsed.credentials):
        if c.name in names:
            msg = f"{path}: credentials.{i}: the name {c.name!r} is used twice"
            raise CredentialsError(msg)
        names.add(c.name)
        if c.key_sha256 is None and c.certificate_subject is None:
            msg = f"{path}: credentials.{i} ({c.name}): give key_sha256 or certificate_subject"
            raise CredentialsError(msg)
        if c.key_sha256 is not None:
            if c.key_sha256 in by_key:
                owner = by_key[c.key_sha256].name
                msg = f"{path}: credentials.{i} ({c.name}): this key hash is already {owner}'s"
                raise CredentialsError(msg)
            by_key[c.key_sha256] = c
        if c.certificate_subject is not None:
            by_subject[c.certificate_subject] = c
    return Grants(by_key, by_subject, path)
