"""What the deploy tests share: where the files are, the one image, and command checks.

Every command a deploy file runs (`commonpool ...`, `ray start ...`) is parsed by the
real CLI's own parser (click), so a flag the CLI does not have, or a value of the wrong
type, fails here rather than at a user's first start.
"""

from __future__ import annotations

import re
import shlex
import tomllib
import warnings
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import typer
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = "/opt/commonpool/.venv/bin/"
IMAGE_NAME = "commonpool"
RAY_PORT_FLAGS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "min-worker-port",
    "max-worker-port",
)
# What workers/ray_node.py sets on the pool's head, and every head here must set alike.
HEAD_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    "RAY_enable_metrics_collection": "0",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def version() -> str:
    return str(pyproject()["project"]["version"])


def image() -> str:
    """The one image every compose service and Kubernetes pod of commonpool runs."""
    return f"{IMAGE_NAME}:{version()}"


def pinned(package: str) -> str:
    """The exact version pyproject.toml pins `package` to (`name==x.y.z`)."""
    for requirement in pyproject()["project"]["dependencies"]:
        name, _, rest = requirement.partition("==")
        if re.sub(r"\[.*\]", "", name).strip().lower() == package:
            return rest.strip()
    raise AssertionError(f"{package} is not pinned in pyproject.toml")


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) of a parsed YAML/JSON tree."""
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


# --- commands ----------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|\$\(([A-Za-z_][A-Za-z0-9_]*)\)"
                       r"|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`${X}`, `${X:?msg}`, `$(X)` (Kubernetes) and `$X` from `env`, else a placeholder."""

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = next(g for g in match.groups() if g)
        return env.get(name, "10.0.0.5")

    return _VARIABLE.sub(value, text)


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a small sh script: split at newlines, `;`, `&&`, `||` and
    `|`, without redirections, leading assignments and `exec`."""
    commands: list[list[str]] = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        tokens = list(lexer)
        skip = False
        for token in tokens:
            if skip:
                skip = False
                continue
            if token in {";", "&&", "||", "|", "&"}:
                commands.append(current)
                current = []
            elif token in {">", ">>", "<", "2>", "2>&1"}:
                skip = True
            else:
                current.append(token)
        commands.append(current)
    out = []
    for argv in commands:
        while argv and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]) or argv[0] == "exec"):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def _is_group(command: Any) -> bool:
    return hasattr(command, "resolve_command")


@cache
def _commonpool_cli() -> Any:
    """The `commonpool` command tree (typer bundles its own click: duck-typed here)."""
    from commonpool.api.cli.main import app

    command = typer.main.get_command(app)
    assert _is_group(command)
    return command


@cache
def _ray_cli() -> Any:
    with warnings.catch_warnings():  # Ray's own deprecation noise on import
        warnings.simplefilter("ignore")
        from ray.scripts.scripts import cli
    return cli


def check_command(argv: list[str], env: Mapping[str, str] | None = None) -> str:
    """Parse `argv` with the real CLI; returns the sub-command path (e.g. `commonpool agent`).

    Raises the CLI's UsageError/BadParameter for an unknown flag or a bad value.
    """
    args = [expand(a, env or {}) for a in argv]
    program = Path(args[0]).name
    roots = {"commonpool": _commonpool_cli, "ray": _ray_cli}
    assert program in roots, f"not a commonpool or ray command: {argv}"
    group = roots[program]()
    ctx = group.make_context(program, args[1:], resilient_parsing=False)
    names = [program]
    rest = [*ctx._protected_args, *ctx.args]  # click keeps the sub-command there
    command = group
    while _is_group(command) and rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        names.append(name)
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        command = sub
    if _is_group(command):  # a group runs alone only with invoke_without_command
        assert command.invoke_without_command, f"{argv}: no sub-command"
    assert not rest, f"{argv}: unexpected arguments {rest}"
    return " ".join(names)


def ray_flags(argv: list[str]) -> dict[str, str]:
    """`--flag=value` / `--flag value` pairs of a `ray start` command line."""
    flags: dict[str, str] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            takes_value = name not in {"head", "block", "disable-usage-stats"}
            if not eq and takes_value and index + 1 < len(argv) and argv[index + 1][:2] != "--":
                value = argv[index + 1]
                index += 1
            flags[name] = value
        index += 1
    return flags
