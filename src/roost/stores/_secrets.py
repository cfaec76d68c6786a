"""Secrets on SQL, encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

The key comes from ``ROOST_SECRET_KEY`` if set (a Fernet key; several comma-separated keys
rotate: the first encrypts, all decrypt), else from ``<home>/secret.key``, created with
mode 0600 on first use. Each token encrypts the secret's name together with its value, so a
token copied under another name does not decrypt as that name's secret.
"""

from __future__ import annotations

import builtins
import logging
import os
import stat
import threading
import time
from pathlib import Path

import msgspec
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession

from roost.protocol import ErrorCode, InvalidRequestError, NotFoundError, RoostError
from roost.stores._db import Database, canonical_json
from roost.stores._schema import SecretRow

log = logging.getLogger("roost.stores")

KEY_ENV = "ROOST_SECRET_KEY"
KEY_FILE = "secret.key"


class SecretKeyError(RoostError):
    """The secret key is missing, malformed, or not the one a secret was encrypted with."""

    code = ErrorCode.AUTH


class _Sealed(msgspec.Struct, frozen=True):
    name: str
    value: str


class SecretKeyring:
    """Loads (or creates) the Fernet key once, on first use; thread-safe."""

    def __init__(self, home: Path | str | None, *, env: str = KEY_ENV) -> None:
        self.home = Path(home).expanduser() if home is not None else None
        self.env = env
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    @property
    def key_file(self) -> Path | None:
        return self.home / KEY_FILE if self.home is not None else None

    def fernet(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = MultiFernet([_fernet(k, self.source) for k in self._keys()])
            return self._fernet

    @property
    def source(self) -> str:
        """Where the key comes from (for messages): the variable or the file."""
        return f"${self.env}" if os.environ.get(self.env) else str(self.key_file)

    def _keys(self) -> list[str]:
        configured = os.environ.get(self.env, "").strip()
        if configured:
            return [k.strip() for k in configured.split(",") if k.strip()]
        path = self.key_file
        if path is None:
            raise SecretKeyError(f"no secret key: set ${self.env} or give the stores a home")
        if not path.exists():
            _create_key_file(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); chmod 600 it", path, mode)
        return [path.read_text().strip()]


def _fernet(key: str, where: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise SecretKeyError(
            f"the secret key in {where} is not a Fernet key (32 url-safe base64-encoded "
            "bytes); make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


def _create_key_file(path: Path) -> None:
    """Write a new key atomically with mode 0600 (a concurrent creator's key wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(Fernet.generate_key().decode() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if it exists: never overwrite a key in use
        except FileExistsError:
            pass
        else:
            log.info("created secret key %s", path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_name(name: str) -> None:
    if not name or len(name) > 200:
        raise InvalidRequestError(f"a secret name is 1-200 characters, not {name!r}")


class SqlSecretStore:
    """:class:`~roost.stores.SecretStore` on the shared SQL database."""

    def __init__(self, db: Database, keyring: SecretKeyring) -> None:
        self._db = db
        self._keyring = keyring

    async def put(self, name: str, value: str) -> None:
        _check_name(name)
        await self._db.run(self._put, name, value)

    def _put(self, name: str, value: str) -> None:
        token = self._keyring.fernet().encrypt(canonical_json(_Sealed(name, value)))

        def work(s: DbSession) -> None:
            now = time.time()
            row = s.get(SecretRow, name)
            if row is None:
                s.add(SecretRow(name=name, token=token, created_at=now, updated_at=now))
            else:
                row.token = token
                row.updated_at = now

        self._db.transact(work, what=f"store secret {name!r}")

    async def get(self, name: str) -> str:
        return await self._db.run(self._get, name)

    def _get(self, name: str) -> str:
        with self._db.read() as s:
            token = s.scalar(select(SecretRow.token).where(SecretRow.name == name))
        if token is None:
            raise NotFoundError(f"unknown secret {name!r}")
        try:
            sealed = msgspec.json.decode(self._keyring.fernet().decrypt(token), type=_Sealed)
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt secret {name!r}: it was stored with another key than the one "
                f"in {self._keyring.source}"
            ) from None
        if sealed.name != name:
            raise SecretKeyError(f"secret {name!r} holds the encrypted value of {sealed.name!r}")
        return sealed.value

    async def delete(self, name: str) -> None:
        def work(s: DbSession) -> None:
            row = s.get(SecretRow, name)
            if row is None:
                raise NotFoundError(f"unknown secret {name!r}")
            s.delete(row)

        await self._db.writing(work, what=f"delete secret {name!r}")

    async def exists(self, name: str) -> bool:
        return await self._db.run(self._exists, name)

    def _exists(self, name: str) -> bool:
        with self._db.read() as s:
            return s.scalar(select(SecretRow.name).where(SecretRow.name == name)) is not None

    async def list(self) -> builtins.list[str]:
        return await self._db.run(self._list)

    def _list(self) -> builtins.list[str]:
        with self._db.read() as s:
            return builtins.list(s.scalars(select(SecretRow.name).order_by(SecretRow.name)))
