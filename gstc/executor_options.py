"""What `gstc run` tells its executor: one typed options object per executor, built from the command line.

Each field that comes from a command-line option names it (`option` in its metadata), so the
options each executor reads are written once, here: an option given with an executor that
does not read it is refused (`build`), and the command line and the executors cannot
disagree about which options go where. Torch-free: the command line checks its options
before importing the runtime.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _option(name: str, default: Any = None) -> Any:
    return field(default=default, metadata={"option": name})


@dataclass(frozen=True)
class Options:
    """What every executor reads."""

    device: str = "auto"  # auto, cpu, cuda or cuda:N (--device)
    track: tuple[str, ...] = ()  # trackers that follow the runs (--track; gstc.runtime.tracking)
    dtype: str = "float32"  # the parameters' torch dtype; float64 only in exactness tests (no option)


@dataclass(frozen=True)
class LocalOptions(Options):
    """`--executor local`: here, on one device, or one worker process per CUDA device (`gpus`)."""

    gpus: tuple[int, ...] | None = _option("--gpus")


@dataclass(frozen=True)
class RayOptions(Options):
    """`--executor ray`: each job a Ray task."""

    address: str | None = _option("--address")  # auto, HOST:PORT, or None: a local Ray for the call
    gpus_per_task: float | None = _option("--gpus-per-task")  # of a GPU, in (0, 1]; None: 1 on GPU clusters
    cpus: int | None = _option("--cpus-per-task")  # per task, and its torch threads; None: 1


@dataclass(frozen=True)
class SlurmOptions(Options):
    """`--executor slurm`: a job array through submitit."""

    partition: str | None = _option("--slurm-partition")
    time: str | None = _option("--slurm-time")  # Slurm's time format; required on a real Slurm
    gpus: int | None = _option("--slurm-gpus")  # per job; None: 1, or 0 for CPU runs and GPU-less partitions
    cluster: str | None = _option("--slurm-cluster")  # slurm, or local: submitit's local mode
    cpus: int | None = _option("--cpus-per-task")  # per job, and its torch threads; None: 1
    mem: str | None = _option("--slurm-mem")
    account: str | None = _option("--slurm-account")
    qos: str | None = _option("--slurm-qos")
    options: tuple[str, ...] = _option("--slurm-option", ())  # other sbatch options, KEY=VALUE or KEY


EXECUTORS: dict[str, type[Options]] = {"local": LocalOptions, "ray": RayOptions, "slurm": SlurmOptions}


class OptionError(ValueError):
    """An option the chosen executor does not read."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def owners() -> dict[str, list[str]]:
    """Each executor option -> the executors that read it, in EXECUTORS' order."""
    found: dict[str, list[str]] = {}
    for kind, cls in EXECUTORS.items():
        for f in dataclasses.fields(cls):
            if "option" in f.metadata:
                found.setdefault(f.metadata["option"], []).append(kind)
    return found


def build(kind: str, given: dict[str, Any], **common: Any) -> Options:
    """The options of executor `kind` from the command line's `given` (option -> value, None or [] when not
    given) and the options every executor reads (`common`: device, track, dtype). An option given that `kind`
    does not read raises OptionError: it would be silently ignored."""
    readers = owners()
    for option, value in given.items():
        if value is None or value == [] or value == ():
            continue
        if option not in readers:
            raise OptionError(option, f"{option} is not an executor option")
        if kind not in readers[option]:
            with_ = " or ".join(f"--executor {k}" for k in readers[option])
            raise OptionError(option, f"{option} goes with {with_}, not --executor {kind}")
    cls = EXECUTORS[kind]
    values = {f.name: given[f.metadata["option"]] for f in dataclasses.fields(cls)
              if f.metadata.get("option") in given and given[f.metadata["option"]] is not None}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in {**values, **common}.items()})
