"""The `commonpool` root command: wires sub-commands and maps errors to exit codes.

Exit codes: 0 ok; 1 the job failed or was cancelled (with --wait); 2 usage;
3 the API refused (prints `title: detail [code]`); 4 the server is unreachable.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from commonpool import __version__
from commonpool.scheduler.domain.errors import CommonpoolError
from commonpool.scheduler.simulate.cli import simulate_command

from ..client.errors import ConnectionFailed
from . import admin, agent, artifacts, compress, jobs, nodes, run, server, services, up
from .context import EXIT_API_PROBLEM, EXIT_CONNECTION, ServerOption, TokenOption, state
from .render import err_console

app = typer.Typer(
    name="commonpool",
    help="A shared compute pool for training AI models on donated machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(server_url: str | None = ServerOption, token: str | None = TokenOption) -> None:
    state.server = server_url
    state.token = token


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


for command in (jobs.submit, jobs.jobs, jobs.job, jobs.logs, jobs.cancel, jobs.array):
    app.command(rich_help_panel="Jobs")(command)
app.command("run", rich_help_panel="Jobs", context_settings=run.CONTEXT_SETTINGS)(run.run)
for command in (nodes.nodes, nodes.drain, nodes.cordon, nodes.uncordon, nodes.revoke, nodes.pool):
    app.command(rich_help_panel="Pool")(command)
app.command("enroll-token", rich_help_panel="Pool")(nodes.enroll_token)
for command in (server.server, server.scheduler):
    app.command(rich_help_panel="Processes")(command)
app.add_typer(agent.agent_app, name="agent", rich_help_panel="Processes")
app.command("up", rich_help_panel="Processes")(up.up)
app.command("demo", rich_help_panel="Processes")(up.demo)
app.add_typer(server.db_app, name="db", rich_help_panel="Processes")
app.add_typer(admin.admin_app, name="admin", rich_help_panel="Pool")
app.add_typer(artifacts.artifacts_app, name="artifacts", rich_help_panel="Jobs")
app.command("serve", rich_help_panel="Jobs")(services.serve)
app.add_typer(services.service_app, name="service", rich_help_panel="Jobs")
app.command("whoami", rich_help_panel="Pool")(admin.whoami)
app.command("simulate", rich_help_panel="Research")(simulate_command)
app.command("compress", rich_help_panel="Research")(compress.compress)


def main() -> None:
    try:
        app()
    except ConnectionFailed as exc:
        err_console.print(f"[red]connection error[/]: {escape(exc.detail)}")
        sys.exit(EXIT_CONNECTION)
    except CommonpoolError as exc:
        err_console.print(f"[red]{escape(exc.title)}[/]: {escape(exc.detail)} \\[{exc.code}]")
        sys.exit(EXIT_API_PROBLEM)
