"""`commonpool artifacts ...`: publish, browse, inspect and download models and datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.markup import escape

from commonpool.scheduler.domain.artifacts import ArtifactKind, Visibility

from ..client import transfer
from ..schemas import ArtifactDetail, ArtifactUpdate
from . import render
from .context import JsonOption, state

artifacts_app = typer.Typer(
    help="Shared models and datasets: versioned, checksummed, with model cards.",
    no_args_is_help=True,
)


@artifacts_app.command("list")
def list_artifacts(
    kind: ArtifactKind | None = typer.Option(None, help="Only models or only datasets."),
    search: str | None = typer.Option(
        None, "--search", "-q", help="Part of a name or description."
    ),
    project: str | None = typer.Option(None, help="Only this project's."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many, newest first."),
    as_json: bool = JsonOption,
) -> None:
    """Artifacts you may see, newest first."""
    with state.client() as client:
        items = client.list_artifacts(
            kind=kind.value if kind else None, query=search, project=project, limit=limit
        )
    if as_json:
        render.print_json(items)
        return
    rows = [
        (a.ref, a.kind, a.format, render.size(a.size_bytes), a.project, a.owner, a.visibility,
         a.produced_by_job or "-", render.age(a.created_at))
        for a in items
    ]  # fmt: skip
    render.console.print(render.table(
        "artifacts",
        ["REF", "KIND", "FORMAT", "SIZE", "PROJECT", "OWNER", "VISIBILITY", "FROM JOB", "AGE"],
        rows,
    ))  # fmt: skip


@artifacts_app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME@VERSION, or NAME for the newest."),
    as_json: bool = JsonOption,
) -> None:
    """One artifact with its model card: lineage, training, energy and carbon, reuse."""
    with state.client() as client:
        artifact = client.get_artifact(ref)
    if as_json:
        render.print_json(artifact)
        return
    render.console.print(render.table("artifact", ["FIELD", "VALUE"], card_rows(artifact)))


def card_rows(artifact: ArtifactDetail) -> list[tuple[str, str]]:
    """The model card as (field, value) rows for a terminal."""
    card = artifact.card
    rows = [
        ("ref", artifact.ref),
        ("kind / format", f"{artifact.kind} / {artifact.format}"),
        ("size", render.size(artifact.size_bytes)),
        ("sha256", artifact.sha256),
        ("owner / project", f"{artifact.owner} / {artifact.project} ({artifact.visibility})"),
        ("licence", artifact.licence or "-"),
        ("description", escape(artifact.description or "-")),
    ]
    lineage = card["lineage"]
    if lineage.get("produced_by_job"):
        rows.append(("produced by job", lineage["produced_by_job"]))
        rows.append(("datasets", ", ".join(lineage.get("datasets") or []) or "-"))
        rows.append(("base model", lineage.get("base_model") or "-"))
    training = card.get("training")
    if training:
        metrics = training.get("metrics") or {}
        rows.append(("final metrics", ", ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, int | float)
        ) or "-"))  # fmt: skip
        if training.get("training_time_s") is not None:
            rows.append(("training time", f"{training['training_time_s']:.0f} s"))
        rows.append(("nodes", ", ".join(training.get("nodes") or []) or "-"))
        energy = training["energy"]
        rows.append(("energy", f"{energy['kwh']:.6f} kWh, {energy['co2e_g']:.3f} gCO2e"))
        rows.append(("energy method", escape(energy["method"] or "-")))
    for compression in card.get("compression") or []:
        rows.append(("compression", f"job {compression['job']}"))
    reuse = card["reuse"]
    saved = reuse.get("energy_saved_kwh")
    rows.append(("reuse", f"{reuse['jobs_started_from_it']} jobs started from it, "
                          f"{reuse['downloads']} downloads"
                          + (f", {saved:.6f} kWh of training saved" if saved else "")))
    return rows


@artifacts_app.command("upload")
def upload(
    path: Path = typer.Argument(..., exists=True, help="A file or a directory (sent as a tar)."),
    name: str = typer.Option(..., help="Artifact name; a new version if it exists."),
    kind: ArtifactKind = typer.Option(ArtifactKind.DATASET, help="model or dataset."),
    format: str = typer.Option("files", help="What is inside: files, npz, torch, onnx, ..."),
    visibility: Visibility = typer.Option(Visibility.PROJECT, help="private, project or public."),
    project: str | None = typer.Option(None, help="Owning project (default: your only one)."),
    licence: str | None = typer.Option(None, help="e.g. CC-BY-4.0, MIT."),
    description: str | None = typer.Option(None, help="What it is, for people searching."),
    as_json: bool = JsonOption,
) -> None:
    """Publish a file or directory as the next version of an artifact (checksummed)."""
    metadata = {"kind": kind.value, "format": format, "visibility": visibility.value,
                "project": project, "licence": licence, "description": description}
    with state.client() as client:
        artifact = client.upload_artifact(
            path, name, **{k: v for k, v in metadata.items() if v is not None}
        )
    if as_json:
        render.print_json(artifact)
        return
    render.console.print(
        f"published [bold]{artifact.ref}[/] ({render.size(artifact.size_bytes)}, "
        f"sha256 {artifact.sha256[:12]}...)"
    )
    render.next_steps(
        show=f"commonpool artifacts show {artifact.ref}",
        use=f"commonpool submit ... --{'init-from' if kind is ArtifactKind.MODEL else 'dataset'} "
        f"{artifact.ref}",
    )


@artifacts_app.command("download")
def download(
    ref: str = typer.Argument(..., help="NAME@VERSION, or NAME for the newest."),
    to: Path = typer.Option(Path("."), help="Folder to unpack it in (as NAME-VERSION/)."),
) -> None:
    """Download, verify and unpack an artifact; run again to resume a broken download."""
    with state.client() as client:
        artifact = client.get_artifact(ref)
        target = to / f"{artifact.name}-{artifact.version}"
        if target.exists():
            raise typer.BadParameter(
                f"{target} exists; remove it or choose --to", param_hint="--to"
            )
        to.mkdir(parents=True, exist_ok=True)
        partial = to / f".{artifact.name}-{artifact.version}.tar.part"
        client.download_artifact(artifact.ref, artifact.sha256, partial)
    unpacking = to / f".{artifact.name}-{artifact.version}.unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)
    transfer.unpack(partial, unpacking)
    unpacking.rename(target)
    partial.unlink()
    render.console.print(f"{artifact.ref} -> {target} (sha256 verified)")


@artifacts_app.command("set")
def set_fields(
    ref: str = typer.Argument(..., help="NAME@VERSION."),
    visibility: Visibility | None = typer.Option(None, help="private, project or public."),
    licence: str | None = typer.Option(None, help="e.g. CC-BY-4.0."),
    description: str | None = typer.Option(None, help="New description."),
    as_json: bool = JsonOption,
) -> None:
    """Change an artifact's visibility, licence or description (its bytes never change)."""
    changes = {"visibility": visibility, "licence": licence, "description": description}
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        raise typer.BadParameter("give --visibility, --licence or --description")
    with state.client() as client:
        artifact = client.update_artifact(ref, ArtifactUpdate(**given))
    render.print_json(artifact) if as_json else render.console.print(
        f"{artifact.ref}: {artifact.visibility}, licence {artifact.licence or '-'}"
    )
