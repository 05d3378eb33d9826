"""The `gstc` command line (docs/design.md, "Commands"), one module per kind of command: `common` (the app and
its output), `specs` (validate, plan, layers, schema), `runs` (run, export-model, status), `results` (export,
report, diff). Importing them registers their commands, in the order `gstc --help` lists them.

Bad input always ends with readable errors on stderr and exit status 1, never a traceback. Commands that only read
specs (validate, plan, layers, schema) import neither torch nor anything that imports it.
"""

from __future__ import annotations

import os
import sys

# Imported in this order, they register their commands in the order `gstc --help` lists them.
from gstc.cli import specs  # noqa: F401, I001  (validate, plan, layers, schema)
from gstc.cli import runs  # noqa: F401  (run, export-model, status)
from gstc.cli import results  # noqa: F401  (export, report, diff)
from gstc.cli.common import app


def main() -> None:
    """Console entry point: any unexpected exception becomes one line, not a traceback."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug in gstc, not in the input
        if os.environ.get("GSTC_DEBUG"):
            raise
        print(f"gstc: internal error: {type(exc).__name__}: {exc} (set GSTC_DEBUG=1 for the traceback; "
              "please report it)", file=sys.stderr)
        sys.exit(2)


__all__ = ["app", "main"]
