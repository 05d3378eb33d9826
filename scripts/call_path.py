"""Print the calls of gstc's own code from `gstc run` to the training loop, on the in-process executor.

    python scripts/call_path.py examples/quickstart.yaml

It runs `gstc run SPEC --variant V --seeds 0` (V: the plan's first variant) into a temporary folder and stops at
the first `Trainer.execute`, printing the frames of gstc's modules on the way: a maintainer's check that the path
stays short (design: one driver, one executor call, one unit of work).
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

import gstc.runtime.train as train
from gstc.cli import main
from gstc.compile import compile_file

ROOTS = (Path(train.__file__).resolve().parents[1], Path(__import__("gstc").__file__).resolve().parents[1])


def _spy(self, *args, **kwargs):
    names = []
    for frame in traceback.extract_stack()[:-1]:
        path = Path(frame.filename).resolve()
        for root in ROOTS:
            if path.is_relative_to(root) and path.relative_to(root).parts[0] in ("gstc", "runtime"):
                names.append(f"{path.relative_to(root)}:{frame.name}")
                break
    names = names[next(i for i, n in enumerate(names) if n.endswith(":run")):]  # from the command's function
    print(" -> ".join(names + ["runtime/train.py:Trainer.execute"]))
    print(f"{len(names)} calls from the command to the loop, through {len({n.split(':')[0] for n in names})} "
          "modules before the loop's")
    raise SystemExit(0)


if __name__ == "__main__":
    spec = sys.argv[1]
    variant = compile_file(spec).configs[0].variant
    train.Trainer.execute = _spy
    with tempfile.TemporaryDirectory() as out:
        sys.argv = ["gstc", "run", spec, "--out", out, "--variant", variant, "--seeds", "0"]
        main()
