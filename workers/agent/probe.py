"""What this machine has, and what its donor shares.

CPUs and memory come from psutil; GPUs from NVML (nvidia-ml-py) when the
library and a driver are present. No GPU, no driver, or no library is the
normal case on most donors, never an error.
"""

from __future__ import annotations

import platform
import socket
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import urlsplit

import psutil


@dataclass(frozen=True, slots=True)
class GpuInfo:
    count: int = 0
    model: str | None = None
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Resources:
    cpus: float
    memory_bytes: int
    gpus: int = 0
    gpu_model: str | None = None
    gpu_memory_bytes: int = 0


def load_nvml() -> ModuleType | None:
    """nvidia-ml-py's module, initialised, or None when there is no usable GPU stack."""
    try:
        import pynvml  # provided by the nvidia-ml-py package
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no driver / library on this machine
        return None
    return pynvml


def probe_gpus(nvml: ModuleType | None) -> GpuInfo:
    if nvml is None:
        return GpuInfo()
    try:
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            return GpuInfo()
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        name = nvml.nvmlDeviceGetName(handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle).total
    except Exception:
        return GpuInfo()
    return GpuInfo(count, name.decode() if isinstance(name, bytes) else str(name), int(memory))


def probe(nvml: ModuleType | None = None) -> Resources:
    """Everything the machine has (GPUs through `nvml`, if given)."""
    gpu = probe_gpus(nvml)
    return Resources(
        cpus=float(psutil.cpu_count(logical=True) or 1),
        memory_bytes=int(psutil.virtual_memory().total),
        gpus=gpu.count,
        gpu_model=gpu.model,
        gpu_memory_bytes=gpu.memory_bytes,
    )


def donated(
    have: Resources,
    *,
    cpus: float | None = None,
    memory_bytes: int | None = None,
    gpus: int | None = None,
) -> Resources:
    """The donor's caps applied to what the machine has; a cap above it is an error."""

    def cap(name: str, asked: float | None, available: float) -> float:
        if asked is None:
            return available
        if asked < 0 or asked > available:
            raise ValueError(f"cannot donate {asked:g} {name}: this machine has {available:g}")
        return asked

    gpu_count = int(cap("gpus", gpus, have.gpus))
    return Resources(
        cpus=cap("cpus", cpus, have.cpus),
        memory_bytes=int(cap("bytes of memory", memory_bytes, have.memory_bytes)),
        gpus=gpu_count,
        gpu_model=have.gpu_model if gpu_count else None,
        gpu_memory_bytes=have.gpu_memory_bytes if gpu_count else 0,
    )


def machine_name() -> str:
    return platform.node() or "donor"


def address_towards(server_url: str) -> str:
    """This machine's address on the route to the server: what its Ray node advertises.

    On a host with several interfaces (LAN, VPN, docker bridges) the right one
    is the one the kernel would use to reach the pool; a UDP connect sends no
    packet, it only picks the route.
    """
    parts = urlsplit(server_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(sockaddr)
        return str(sock.getsockname()[0])


def collective_env(address: str) -> dict[str, str]:
    """Tell Gloo and NCCL to use the interface that holds `address`.

    Left alone, they take the address the hostname resolves to, often
    127.0.1.1 on a donor's machine: ranks on other hosts then dial their own
    loopback and DDP set-up times out. Ray's workers inherit this from the node.
    """
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address == address for a in addresses):
            return {"GLOO_SOCKET_IFNAME": name, "NCCL_SOCKET_IFNAME": name}
    return {}
