"""The configuration an agent reports for its node (`RegisterAgentRequest.node_config`).

Two sources, either or both: a file the operator writes (`--node-config-file`, JSON or TOML) and
the node process's own command line (`--node-pid`, read from `/proc/<pid>/cmdline`).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
import tomllib
from collections.abc import Callable, Sequence

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from fodcproxy.core.model import NodeConfig
from fodcproxy.errors import ConfigError

__all__ = ["NodeConfigWatcher", "load_node_config", "parse_cmdline"]

log = logging.getLogger(__name__)

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


class NodeConfigWatcher:
    """The node configuration the agent reports, kept current.

    Call it (the `AgentClient` does, at registration and with every heartbeat) to get the current
    `NodeConfig`, or None when neither a file nor a pid was given. The command line of `pid` is
    read once, at construction: a process's argv does not change. The file is loaded at
    construction and again whenever its modification time, size or inode changes (an editor that
    saves by renaming counts); `collected_at` is the wall-clock time (`clock`) of that load, so an
    unchanged configuration is sent unchanged. A reload that fails (the file is being rewritten,
    or was removed) keeps the last good configuration and logs a warning.

    Raises ConfigError naming `--node-config-file` or `--node-pid` when the first load fails.
    """

    def __init__(self, path: str | None, *, pid: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._from_pid: dict[str, str] = {}
        if pid is not None:
            self._from_pid = dict(load_node_config(None, pid=pid, now=clock()).startup_params)
        self._stamp: tuple[int, int, int] | None = None
        self._error: str | None = None
        self._reloads = 0
        self._config: NodeConfig | None = None
        if path is None:
            if pid is not None:
                self._config = NodeConfig(startup_params=self._from_pid, collected_at=clock())
        else:
            self._stamp = self._stat(path)
            self._config = self._load(path)

    @property
    def reloads(self) -> int:
        """How many times a changed file was loaded again (the first load is not counted)."""
        return self._reloads

    def __call__(self) -> NodeConfig | None:
        """The current configuration, reloading the file first if it changed."""
        if self._path is not None:
            try:
                stamp = self._stat(self._path)
                if stamp != self._stamp:
                    self._config = self._load(self._path)
                    self._stamp = stamp
                    self._reloads += 1
                    self._error = None
                    log.info("node configuration reloaded from %s", self._path)
            except ConfigError as exc:
                if exc.message != self._error:
                    log.warning("keeping the last node configuration: %s", exc.message)
                    self._error = exc.message
        return self._config

    @staticmethod
    def _stat(path: str) -> tuple[int, int, int]:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError("--node-config-file",
                              f"cannot read {path}: {exc.strerror or exc}") from None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load(self, path: str) -> NodeConfig:
        loaded = load_node_config(path, now=self._clock())
        if not self._from_pid:
            return loaded
        # Same precedence as load_node_config(path, pid=...): the file wins over the command line.
        return attrs.evolve(loaded, startup_params={**self._from_pid, **loaded.startup_params})


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
    try:
        loaded = _converter.structure(doc, _NodeConfigFile)
    except cattrs.ForbiddenExtraKeysError as exc:
        raise ConfigError(_FILE_FLAG, f"{path}: unknown top-level key(s) "
                                      f"{', '.join(sorted(exc.extra_fields))}; "
                                      f"expected {' and/or '.join(_KEYS)}") from None
    except _Shape as exc:
        raise ConfigError(_FILE_FLAG, f"{path}: {exc}") from None
    return loaded.startup_params, loaded.runtime_config


class _Shape(Exception):
    """A value of the wrong shape; the message names where, the caller adds the file."""


@attrs.frozen
class _NodeConfigFile:
    """What a node configuration file holds, both tables optional."""

    startup_params: dict[str, str] = attrs.field(factory=dict)
    runtime_config: dict[str, object] = attrs.field(factory=dict)


def _structure_startup(value: object, _: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Shape(f"startup_params must be a table, not {_kind(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            raise _Shape(f"startup_params.{key} must be a single value, "
                         f"not {_kind(item)} (startup_params is a flat table)")
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif item is None:
            out[key] = ""
        else:
            out[key] = str(item)
    return out


def _structure_runtime(value: object, _: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Shape(f"runtime_config must be a table, not {_kind(value)}")
    return {key: _json_like(item, f"runtime_config.{key}") for key, item in value.items()}


def _json_like(value: object, where: str) -> object:
    # google.protobuf.Struct carries only JSON values: convert TOML's dates and times.
    if isinstance(value, dict):
        return {k: _json_like(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_json_like(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise _Shape(f"{where} holds {_kind(value)}, not a JSON value")


# JSON and TOML documents -> _NodeConfigFile. Unknown top-level keys are refused; the two tables
# get hooks of their own (strings for startup_params, JSON values for runtime_config), whose
# errors pass through unwrapped (no detailed validation) so they keep their own messages.
_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=False)
_converter.register_structure_hook(
    _NodeConfigFile,
    make_dict_structure_fn(
        _NodeConfigFile, _converter,
        startup_params=override(struct_hook=_structure_startup),
        runtime_config=override(struct_hook=_structure_runtime),
    ),
)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"
