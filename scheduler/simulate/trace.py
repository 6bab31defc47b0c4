"""Reading Gavel's Philly-derived traces (format: ``../shared/data/README.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Job types Gavel only measured on one GPU; its reference runs ran them as 1-GPU jobs.
SINGLE_GPU_FAMILIES = ("A3C", "CycleGAN", "Recommendation")
MAX_SCALE = 8


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One trace line: ``gpus`` GPUs at once (a gang) for ``total_steps`` steps."""

    index: int
    job_type: str
    total_steps: float
    arrival_s: float
    gpus: int
    requested_gpus: int

    @property
    def family(self) -> str:
        """The model family (``ResNet-50``, ``LM``, ...), used as the simulated project."""
        return self.job_type.split(" (")[0]


def gavel_scale(job_type: str, scale_factor: int) -> int:
    """Gavel's conversion: cap at 8 GPUs; single-GPU-only families run on one GPU."""
    if job_type.startswith(SINGLE_GPU_FAMILIES):
        return 1
    return min(scale_factor, MAX_SCALE)


def read_trace(path: Path | str, *, gavel_conversion: bool = True) -> list[TraceJob]:
    """Parse the tab-separated trace; jobs come back in arrival order (ties by line)."""
    jobs = []
    for index, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            raise ValueError(f"{path}:{index + 1}: expected 7 tab-separated fields")
        job_type, steps, arrival, sf = fields[0], fields[4], fields[5], int(fields[6])
        gpus = gavel_scale(job_type, sf) if gavel_conversion else sf
        jobs.append(TraceJob(index, job_type, float(steps), float(arrival), gpus, sf))
    return sorted(jobs, key=lambda j: (j.arrival_s, j.index))
