"""``roost auth``: log in to an API server, out, and who you are; ``roost token``: your
personal access tokens (create, list, revoke).

``roost auth login`` checks a token against the server (``POST /api/v1/auth/login``),
keeps it in ``$ROOST_HOME/credentials/api-token`` (mode 0600) and points ``client.toml``
at the server and that file, so every later command goes through the API. The token
commands always go through the API.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import typer
from pydantic import ValidationError
from rich.table import Table

from roost.cli._common import console, err_console, fail, run_async
from roost.config import (
    ClientSettings,
    ConfigError,
    client_config_path,
    default_home,
    load_client_settings,
)
from roost.protocol import ErrorCode, RoostError

if TYPE_CHECKING:
    from roost.platform._http import ApiClient

T = TypeVar("T")

app = typer.Typer(
    help="Log in to a roost API server, out, and see who you are.", no_args_is_help=True
)
tokens = typer.Typer(help="Your personal access tokens for the roost API.", no_args_is_help=True)

#: The keys of client.toml that ``roost auth login`` writes and ``logout`` removes.
_LOGIN_KEYS = ("api_url", "token", "token_file", "ca_file")
#: Keys naming a deployment over gRPC: not together with an API server.
_GRPC_KEYS = ("harness", "registry", "state", "secret", "catalog")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_LINE = re.compile(r"""^\s*(["']?)([A-Za-z0-9_-]+)\1\s*=""")
_LOGIN_HINT = "roost auth login --url URL"


def credentials_path() -> Path:
    """Where ``roost auth login`` keeps the token: ``$ROOST_HOME/credentials/api-token``."""
    return default_home() / "credentials" / "api-token"


# --- files ----------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by its owner only (0600), atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover of a crash: never write through what is there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_config(path: Path) -> tuple[str, dict[str, Any]]:
    """client.toml's text and values (both empty when there is no file)."""
    if not path.is_file():
        return "", {}
    text = path.read_text()
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path}: not valid TOML: {exc}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        out = []
        for char in value:
            if char in '"\\':
                out.append("\\" + char)
            elif ord(char) < 0x20 or ord(char) == 0x7F:
                out.append(f"\\u{ord(char):04X}")
            else:
                out.append(char)
        return '"' + "".join(out) + '"'
    raise ConfigError(f"cannot write {value!r} to client.toml: not a plain value")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_value(key)


def _rewrite(text: str, values: dict[str, Any], changes: dict[str, Any | None]) -> str:
    """client.toml's ``text`` (of ``values``) with ``changes``: a key set to a value, or
    removed (``None``). Comments and the order of the other lines are kept; when the lines
    cannot be edited one by one (a multi-line value), the file is written afresh."""
    wanted = {k: v for k, v in values.items() if changes.get(k, v) is not None}
    wanted.update({k: v for k, v in changes.items() if v is not None})
    lines: list[str] = []
    written: set[str] = set()
    for line in text.splitlines():
        found = _KEY_LINE.match(line)
        key = found.group(2) if found else None
        if key is not None and key in changes:
            if changes[key] is not None and key not in written:
                lines.append(f"{_toml_key(key)} = {_toml_value(changes[key])}")
                written.add(key)
            continue
        lines.append(line)
    lines += [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in changes.items()
        if v is not None and k not in written
    ]
    edited = "\n".join(lines).strip("\n")
    edited = edited + "\n" if edited else ""
    try:
        if tomllib.loads(edited) == wanted:
            return edited
    except tomllib.TOMLDecodeError:
        pass
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in wanted.items())


def _problems(exc: ValidationError) -> str:
    out = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in error["loc"])
        out.append(f"{where}: {message}" if where else message)
    return "; ".join(out)


# --- the API --------------------------------------------------------------------------------


def _client_settings() -> ClientSettings:
    """The configured API server, or a clear error telling how to log in."""
    try:
        client = load_client_settings()
    except ConfigError as exc:
        fail(str(exc))
    if not client.over_api:
        fail(f"no roost API server configured: log in first with `{_LOGIN_HINT}`")
    return client


async def _with_api(client: ClientSettings, work: Callable[[ApiClient], Awaitable[T]]) -> T:
    from roost.platform._http import ApiClient

    api = ApiClient(client)
    try:
        return await work(api)
    finally:
        await api.close()


def _when(at: float | None, never: str = "never") -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at is not None else never


def _state(token: dict[str, Any], now: float) -> str:
    if token.get("revoked_at") is not None:
        return "revoked"
    return "expired" if float(token["expires_at"]) <= now else "active"


def _write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")


# --- roost auth -----------------------------------------------------------------------------


def _read_token(given: str | None) -> str:
    if given is not None:
        token = given
    elif not sys.stdin.isatty():
        token = sys.stdin.read()
    else:
        token = typer.prompt("token", hide_input=True, err=True)
    token = token.strip()
    if not token:
        fail("no token given: pass --token, pipe it on stdin, or type it when asked")
    if any(c.isspace() for c in token):
        fail("that is not a token: it contains white space")
    return token


@app.command("login")
@run_async
async def login(
    url: str = typer.Option(..., "--url", help="The API server: http(s)://host[:port]."),
    token: str | None = typer.Option(
        None,
        "--token",
        help="The access token (`roost server init`, `roost token create`); omitted: read "
        "from stdin, or asked for without echo. On the command line it shows in `ps`.",
    ),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="A CA bundle (PEM) to verify the server's certificate with."
    ),
) -> None:
    """Check a token against an API server and use both from now on.

    The token is kept in $ROOST_HOME/credentials/api-token (mode 0600); client.toml gets
    api_url and token_file (and ca_file), its other settings stay."""
    path = client_config_path()
    text, values = _read_config(path)
    grpc = [key for key in _GRPC_KEYS if values.get(key)]
    if grpc:
        fail(
            f"{path} sets {grpc[0]} (a deployment over gRPC): remove it to use an API server "
            "instead"
        )
    secret = _read_token(token)
    kept = {k: v for k, v in values.items() if k not in _LOGIN_KEYS}
    chosen_ca = str(ca_file.expanduser().resolve()) if ca_file else values.get("ca_file", "")
    try:
        client = ClientSettings(**kept, api_url=url, token=secret, ca_file=chosen_ca)
    except ValidationError as exc:
        fail(f"{path if values else 'login'}: {_problems(exc)}")

    async def check(api: ApiClient) -> Any:
        return await api.request("POST", "/auth/login")

    try:
        me = await _with_api(client, check)
    except RoostError as exc:
        if exc.code == ErrorCode.AUTH:
            fail(f"{client.api_url} refused the token: unknown, expired or revoked")
        raise
    saved = credentials_path()
    saved.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(saved.parent, 0o700)
    _write_private(saved, secret + "\n")
    changes: dict[str, Any | None] = {
        "api_url": client.api_url,
        "token": None,
        "token_file": str(saved),
    }
    if ca_file:
        changes["ca_file"] = chosen_ca
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(path, _rewrite(text, values, changes))
    console.print(
        f"logged in to {client.api_url} as {me['name']} "
        f"(tenant {me['tenant']}, scopes {' '.join(me['scopes'])})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    err_console.print(f"token saved in {saved}; settings in {path}", style="dim", highlight=False)
    overriding = [
        f"ROOST_CLIENT__{key.upper()}"
        for key in _LOGIN_KEYS + _GRPC_KEYS
        if f"ROOST_CLIENT__{key.upper()}" in os.environ
    ]
    if overriding:
        err_console.print(
            f"note: {', '.join(overriding)} set in the environment override client.toml",
            highlight=False,
        )


@app.command("logout")
def logout() -> None:
    """Forget the API server and the token `roost auth login` saved.

    The token stays valid on the server: revoke it there (`roost token revoke`) if it is
    not needed any more."""
    path = client_config_path()
    text, values = _read_config(path)
    saved = credentials_path()
    removed = saved.is_file()
    saved.unlink(missing_ok=True)
    present = [key for key in _LOGIN_KEYS if key in values]
    if present:
        try:
            _write_private(path, _rewrite(text, values, dict.fromkeys(present)))
        except OSError as exc:
            fail(f"{path}: {exc.strerror or exc}")
    if not present and not removed:
        console.print("not logged in")
        return
    where = values.get("api_url")
    console.print(f"logged out{f' of {where}' if where else ''}", highlight=False)
    elsewhere = values.get("token_file")
    if elsewhere and Path(str(elsewhere)).expanduser() != saved:
        err_console.print(f"left the token file {elsewhere} in place", highlight=False)


@app.command("whoami")
@run_async
async def whoami(
    as_json: bool = typer.Option(False, "--json", help="Print the answer of /api/v1/me."),
) -> None:
    """Who the configured token belongs to."""
    client = _client_settings()

    async def work(api: ApiClient) -> Any:
        return await api.request("GET", "/me")

    me = await _with_api(client, work)
    if as_json:
        _write_json(me)
        return
    console.print(
        f"{me['name']} ({me['id']}) at {client.api_url}: tenant {me['tenant']}, role "
        f"{me['role']}, scopes {' '.join(me['scopes'])}"
        + (f", token {me['token_id']}" if me.get("token_id") else ""),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


# --- roost token ----------------------------------------------------------------------------


@tokens.command("create")
@run_async
async def create_token(
    name: str = typer.Argument(..., help="What the token is for (shown in `roost token list`)."),
    scope: list[str] | None = typer.Option(
        None,
        "--scope",
        help="A scope of the token (repeat it for more); omitted: read and the write scopes "
        "of runs, agents, models, secrets and tokens. A token grants only scopes its maker has.",
    ),
    expires_in_days: float | None = typer.Option(
        None, "--expires-in-days", help="When it expires [default: the server's, 90 days]."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the new token and its record as one JSON object."
    ),
) -> None:
    """Make a personal access token; the token is printed alone on stdout, this once."""
    from roost.auth import ScopeError, check_scopes
    from roost.stores import MAX_TOKEN_TTL_S

    body: dict[str, Any] = {"name": name}
    if scope:
        try:
            body["scopes"] = list(check_scopes(scope))
        except ScopeError as exc:
            fail(str(exc))
    if expires_in_days is not None:
        max_days = MAX_TOKEN_TTL_S // 86400
        if not 0 < expires_in_days <= max_days:
            fail(f"--expires-in-days: more than 0 and at most {max_days}")
        body["expires_in_days"] = expires_in_days
    client = _client_settings()

    async def work(api: ApiClient) -> Any:
        return await api.request("POST", "/tokens", json=body)

    made = await _with_api(client, work)
    if as_json:
        _write_json(made)
        return
    sys.stdout.write(str(made["token"]) + "\n")
    sys.stdout.flush()
    err_console.print(
        f"created token {made['id']} {made['name']!r} (scopes {' '.join(made['scopes'])}, "
        f"expires {_when(made['expires_at'])}); it is shown this once",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@tokens.command("list")
@run_async
async def list_tokens(
    as_json: bool = typer.Option(False, "--json", help="Print the tokens' records as JSON."),
) -> None:
    """Your access tokens, newest first (never the tokens themselves)."""
    client = _client_settings()

    async def work(api: ApiClient) -> Any:
        return await api.request("GET", "/tokens")

    found: list[dict[str, Any]] = await _with_api(client, work)
    now = time.time()
    if as_json:
        _write_json([{**t, "state": _state(t, now)} for t in found])
        return
    table = Table("id", "name", "prefix", "scopes", "expires", "last used", "state")
    for token in found:
        table.add_row(
            token["id"],
            token["name"],
            f"{token['prefix']}…",
            " ".join(token["scopes"]),
            _when(token["expires_at"]),
            _when(token.get("last_used_at")),
            _state(token, now),
        )
    console.print(table)


@tokens.command("revoke")
@run_async
async def revoke_token(
    token_id: str = typer.Argument(..., help="The token's id (tok_...)."),
) -> None:
    """Revoke one of your access tokens (an admin: anyone's); it stops working at once."""
    client = _client_settings()

    async def work(api: ApiClient) -> Any:
        me = await api.request("GET", "/me")
        await api.request("DELETE", f"/tokens/{quote(token_id, safe='')}")
        return me

    me = await _with_api(client, work)
    console.print(f"revoked {token_id}", highlight=False, markup=False)
    if me.get("token_id") == token_id:
        err_console.print(
            f"that was this CLI's own token: log in again with `{_LOGIN_HINT}`", highlight=False
        )


__all__ = ["app", "credentials_path", "tokens"]
