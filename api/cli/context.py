"""Where the CLI finds the server, and how it turns errors into exit codes."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from commonpool.scheduler.config import get_settings

from ..client.sdk import Client

EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API_PROBLEM = 3
EXIT_CONNECTION = 4


@dataclass
class CliState:
    server: str | None = None
    token: str | None = None

    def client(self) -> Client:
        settings = get_settings()
        return Client(
            self.server or settings.server_url,
            token=self.token or settings.client_token(),
            ca_file=settings.ca_file,
        )


state = CliState()

ServerOption = typer.Option(
    None,
    "--server",
    envvar="COMMONPOOL_SERVER_URL",
    help="API base URL (default: server_url from the config file, else http://127.0.0.1:8765).",
)
TokenOption = typer.Option(
    None,
    "--token",
    envvar="COMMONPOOL_TOKEN",
    help="API token (default: the token file, <state_dir>/admin-token, when it exists).",
    show_envvar=True,
)
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")
