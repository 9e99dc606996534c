"""How every TradePulse process connects to a secured Kafka cluster: TLS, SASL, and secrets that may
come from files (docs/configuration.md, "Secured clusters"; docs/security.md).

One place builds the client settings, for aiokafka (``ssl_context``, ``sasl_*``) and for Faust
(``broker_credentials``), so a worker, its state store, ``history``, ``publish``, ``tail``,
``simulate`` and ``bench`` all connect the same way. Secret values are :class:`SecretStr`: they
never appear in a repr, a log line, an error message or a settings dump.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "SECRET_VARIABLES", "ConfigError", "KafkaSecurity", "SecretFiles", "kafka_client", "read_secret_files",
]  # fmt: skip

# every secret a process reads; each may also be given as <NAME>_FILE (Docker/Kubernetes secrets)
SECRET_VARIABLES = ("KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD", "DATABASE_URL")

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class ConfigError(ValueError):
    """A setting that cannot work, named with its fix; never quotes a secret."""


def read_secret_files(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{NAME: value}`` for every secret given as ``<NAME>_FILE``; both forms set is an error."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name in SECRET_VARIABLES:
        path = env.get(f"{name}_FILE")
        if not path:
            continue
        if env.get(name):
            msg = f"{name} and {name}_FILE are both set; keep one"
            raise ConfigError(msg)
        try:
            out[name] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            msg = f"{name}_FILE: cannot read {path}: {exc.strerror or exc}"
            raise ConfigError(msg) from None
    return out


class SecretFiles(PydanticBaseSettingsSource):
    """A settings source for the ``<NAME>_FILE`` form of the secrets a settings class declares."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        aliases = {f.validation_alias for f in self.settings_cls.model_fields.values()}
        return {name: value for name, value in read_secret_files().items() if name in aliases}


class FileSecretsSettings(BaseSettings):
    """Base of settings classes whose secrets may come from files: the environment wins over
    defaults, and a ``<NAME>_FILE`` counts as setting ``NAME``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, SecretFiles(settings_cls)


def _path(alias: str) -> Any:
    return Field(default=None, validation_alias=alias)


class KafkaSecurity(FileSecretsSettings):
    """``KAFKA_SECURITY_PROTOCOL`` and friends (docs/configuration.md)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=True, env_ignore_empty=True)

    protocol: Annotated[Protocol, Field(validation_alias="KAFKA_SECURITY_PROTOCOL")] = "PLAINTEXT"
    sasl_mechanism: Annotated[Mechanism | None, Field(validation_alias="KAFKA_SASL_MECHANISM")] = None
    sasl_username: Annotated[str | None, Field(validation_alias="KAFKA_SASL_USERNAME", min_length=1)] = None
    sasl_password: Annotated[SecretStr | None, Field(validation_alias="KAFKA_SASL_PASSWORD")] = None
    ssl_cafile: Path | None = _path("KAFKA_SSL_CAFILE")
    ssl_certfile: Path | None = _path("KAFKA_SSL_CERTFILE")
    ssl_keyfile: Path | None = _path("KAFKA_SSL_KEYFILE")
    ssl_key_password: Annotated[SecretStr | None, Field(validation_alias="KAFKA_SSL_KEY_PASSWORD")] = None
    ssl_check_hostname: Annotated[bool, Field(validation_alias="KAFKA_SSL_CHECK_HOSTNAME")] = True

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Settings that cannot work together are refused at start-up, by name."""
        if self.sasl:
            missing = [
                name
                for name, value in (
                    ("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.sasl_password),
                )
                if not value
            ]
            if missing:
                msg = f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs {', '.join(missing)}"
                raise ValueError(msg)
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            msg = (
                f"KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL={self.protocol} does not use SASL "
                "(SASL_SSL or SASL_PLAINTEXT)"
            )
            raise ValueError(msg)
        files = {
            "KAFKA_SSL_CAFILE": self.ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.ssl_keyfile,
        }
        given = {name: path for name, path in files.items() if path is not None}
        if given and not self.tls:
            msg = f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL={self.protocol} does not use TLS"
            raise ValueError(msg)
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            msg = "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (the client certificate and its key)"
            raise ValueError(msg)
        for name, path in given.items():
            if not path.is_file() or not os.access(path, os.R_OK):
                msg = f"{name}: {path} is not a readable file"
                raise ValueError(msg)
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every client (None without TLS): the CA file, or the system's CAs;
        the client certificate for mutual TLS; hostname verification unless switched off."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        except (ssl.SSLError, OSError) as exc:
            msg = f"KAFKA_SSL_CAFILE: {self.ssl_cafile} holds no usable CA certificate ({exc})"
            raise ConfigError(msg) from None
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            try:
                context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile), password=password)
            except (ssl.SSLError, OSError) as exc:
                msg = (
                    "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE: the certificate and key do not load "
                    f"({type(exc).__name__}; a wrong KAFKA_SSL_KEY_PASSWORD or a key that is not the "
                    "certificate's)"
                )
                raise ConfigError(msg) from None
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.sasl_password is not None  # checked by _consistent
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options

    def faust(self) -> Any:
        """``broker_credentials`` for Faust (None for PLAINTEXT)."""
        import faust

        if self.sasl:
            assert self.sasl_password is not None
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def principal(self) -> str:
        """Who the broker will take this client for, as its ACLs name principals."""
        if self.sasl:
            return f"User:{self.sasl_username}"
        if self.ssl_certfile is not None:
            return "the principal of KAFKA_SSL_CERTFILE"
        return "this client (User:ANONYMOUS)" if self.protocol == "PLAINTEXT" else "this client"

    def describe(self) -> str:
        """How this process connects, for its start-up line (no secret)."""
        parts: list[str] = [self.protocol]
        if self.sasl:
            parts.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        if self.tls:
            parts.append(f"CA {self.ssl_cafile or 'system'}")
            if self.ssl_certfile:
                parts.append("client certificate")
            if not self.ssl_check_hostname:
                parts.append("hostname not checked")
        return ", ".join(parts)


def kafka_client(bootstrap: str | list[str]) -> dict[str, Any]:
    """aiokafka options for a tool's own clients of ``bootstrap`` (a benchmark's broker, the local
    stack): the KAFKA_* security settings apply as to every other process."""
    return {"bootstrap_servers": bootstrap, **KafkaSecurity().aiokafka()}
