"""The configuration an agent reports for its node (`RegisterAgentRequest.node_config`).

Two sources, either or both: a file the operator writes (`--node-config-file`, JSON or TOML) and
the node process's own command line (`--node-pid`, read from `/proc/<pid>/cmdline`).
"""

from __future__ import annotations

import datetime
import json
import os
import tomllib
from collections.abc import Mapping, Sequence

from fodcproxy.core.model import NodeConfig
from fodcproxy.errors import ConfigError

__all__ = ["load_node_config", "parse_cmdline"]

_FILE_FLAG = "--node-config-file"
_PID_FLAG = "--node-pid"
_KEYS = ("startup_params", "runtime_config")


def load_node_config(
    path: str | None = None,
    *,
    pid: int | None = None,
    now: float,
    proc_root: str = "/proc",
) -> NodeConfig:
    """Collect a node's configuration; `collected_at` is `now` (Unix seconds).

    `path`: a `.json` or `.toml` file with up to two top-level keys: `startup_params`, a flat table
    whose values become strings (booleans as "true"/"false", other scalars with `str()`), and
    `runtime_config`, any JSON-like table (TOML dates and times become ISO 8601 strings).
    `pid`: the node's process; its command line (`<proc_root>/<pid>/cmdline`) is parsed with
    `parse_cmdline` into `startup_params`. With both, the two `startup_params` are merged and the
    file wins. With neither, the configuration is empty.

    Raises ConfigError naming `--node-config-file` (unreadable file, unknown extension, syntax
    error, unknown top-level keys, wrong value shapes) or `--node-pid` (no such process, empty
    command line).
    """
    startup: dict[str, str] = {}
    runtime: dict[str, object] = {}
    if pid is not None:
        startup.update(parse_cmdline(_read_cmdline(pid, proc_root)))
    if path is not None:
        file_startup, runtime = _load_file(path)
        startup.update(file_startup)
    return NodeConfig(startup_params=startup, runtime_config=runtime, collected_at=now)


def parse_cmdline(argv: Sequence[str]) -> dict[str, str]:
    """Turn a process's argv into startup parameters.

    `argv[0]` becomes `_command`. `--flag=value` and `--flag value` become `{"flag": "value"}`, a
    bare `--flag` (followed by another flag, or last) becomes `"true"`; Go-style single-dash
    flags (`-flag=value`) are read the same way. A following word is taken as the flag's value
    unless it starts with "-" and is not a number. Words that are neither flags nor values (a
    subcommand such as `liaison`, or anything after `--`) are joined with spaces under `_args`.
    A flag given twice keeps its last value.
    """
    params: dict[str, str] = {}
    if not argv:
        return params
    params["_command"] = argv[0]
    positional: list[str] = []
    args = list(argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if not _is_flag(arg):
            positional.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if not eq:
            if i < len(args) and not _is_flag(args[i]) and args[i] != "--":
                value = args[i]
                i += 1
            else:
                value = "true"
        params[name] = value
    if positional:
        params["_args"] = " ".join(positional)
    return params


def _is_flag(arg: str) -> bool:
    if not arg.startswith("-") or arg in ("-", "--"):
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False  # a negative number is a value, not a flag


def _read_cmdline(pid: int, proc_root: str) -> list[str]:
    path = os.path.join(proc_root, str(pid), "cmdline")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(_PID_FLAG, f"no process {pid} ({path} does not exist)") from None
    except OSError as exc:
        raise ConfigError(_PID_FLAG, f"cannot read {path}: {exc.strerror or exc}") from None
    # argv entries are NUL-terminated; a kernel thread or a zombie has an empty command line.
    argv = [a.decode("utf-8", errors="replace") for a in raw.split(b"\0")]
    if argv and argv[-1] == "":
        argv.pop()
    if not argv:
        raise ConfigError(_PID_FLAG, f"process {pid} has an empty command line ({path})")
    return argv


def _load_file(path: str) -> tuple[dict[str, str], dict[str, object]]:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".json", ".toml"):
        raise ConfigError(_FILE_FLAG, f"{path}: unknown file type {ext or '(none)'!r}; "
                                      "use a .json or .toml file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(_FILE_FLAG, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text) if ext == ".json" else tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(_FILE_FLAG, f"{path}: not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(_FILE_FLAG, f"{path}: invalid JSON: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_FILE_FLAG, f"{path}: invalid TOML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(_FILE_FLAG, f"{path}: the top level must be a table (an object), "
                                      f"not {_kind(doc)}")
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise ConfigError(_FILE_FLAG, f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
                                      f"expected {' and/or '.join(_KEYS)}")
    startup = doc.get("startup_params", {})
    runtime = doc.get("runtime_config", {})
    if not isinstance(startup, dict):
        raise ConfigError(_FILE_FLAG,
                          f"{path}: startup_params must be a table, not {_kind(startup)}")
    if not isinstance(runtime, dict):
        raise ConfigError(_FILE_FLAG,
                          f"{path}: runtime_config must be a table, not {_kind(runtime)}")
    return _flat_strings(path, startup), {
        key: _json_like(path, value, f"runtime_config.{key}") for key, value in runtime.items()
    }


def _flat_strings(path: str, table: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(_FILE_FLAG, f"{path}: startup_params.{key} must be a single value, "
                                          f"not {_kind(value)} (startup_params is a flat table)")
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif value is None:
            out[key] = ""
        else:
            out[key] = str(value)
    return out


def _json_like(path: str, value: object, where: str) -> object:
    # google.protobuf.Struct carries only JSON values: convert TOML's dates and times.
    if isinstance(value, dict):
        return {k: _json_like(path, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_json_like(path, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ConfigError(_FILE_FLAG, f"{path}: {where} holds {_kind(value)}, not a JSON value")


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"
