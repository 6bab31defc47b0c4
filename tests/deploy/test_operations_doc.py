"""docs/operations.md and deploy/README.md: commands that work, numbers that were measured.

Every `commonpool ...` line of their shell blocks is parsed by the real CLI (a renamed
flag fails here), and every figure of the capacity table must appear in the measured
docs it quotes (docs/benchmarks.md, docs/policies.md, docs/reliability.md).
"""

from __future__ import annotations

import re

import pytest

from tests.deploy.manifests import DEPLOY, REPO, check_command, shell_commands

OPERATIONS = REPO / "docs" / "operations.md"
DOCS = [OPERATIONS, DEPLOY / "README.md"]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.DOTALL)


def commonpool_lines(text: str) -> list[list[str]]:
    commands = []
    for block in shell_blocks(text):
        for argv in shell_commands(block):
            if argv[0] == "commonpool":
                commands.append(argv)
    return commands


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_commonpool_command_in_the_docs_parses(doc) -> None:  # type: ignore[no-untyped-def]
    commands = commonpool_lines(doc.read_text())
    assert commands
    for argv in commands:
        check_command(argv)


def test_the_guide_covers_what_the_issue_asks() -> None:
    text = OPERATIONS.read_text()
    for heading in ("## Install", "### Firewall", "## Upgrade", "## Backup and restore",
                    "### PostgreSQL", "### SQLite", "### Artifacts", "## Rotating credentials",
                    "## Removing a donor", "## Capacity planning"):
        assert heading in text, heading
    for words in ("pg_dump", "pg_restore", ".backup", "commonpool db upgrade",
                  "commonpool admin create-token", "commonpool admin revoke-token",
                  "commonpool revoke NODE", "commonpool drain NODE", "tls_cert_file",
                  "COMMONPOOL_RAY_AUTH_TOKEN_FILE", "--node-ip"):
        assert words in text, words
    readme = (REPO / "README.md").read_text()
    assert "docs/operations.md" in readme, "README's More: list should name the guide"


def test_capacity_figures_are_quoted_from_the_measurements() -> None:
    text = OPERATIONS.read_text()
    section = text.split("## Capacity planning", 1)[1].split("\n## ", 1)[0]
    measured = " ".join(
        (REPO / "docs" / name).read_text() for name in ("benchmarks.md", "policies.md",
                                                        "reliability.md", "security.md")
    )
    figures = re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:k\b)?", section)
    assert len(figures) >= 20
    invented = [f for f in figures if f not in measured]
    assert invented == [], f"figures not found in the measured docs: {invented}"
