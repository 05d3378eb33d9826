"""gstc: compile YAML pruning-experiment specs into exact plans, run them, compare results.

This package never imports torch at module level: validating, planning, diffing and
reporting work without it (see tests/gstc/test_no_torch.py). The PyTorch runtime is the
subpackage `gstc.runtime`, whose files live in the repository's runtime/ folder.
"""

import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.5.0"
FORMAT = 1  # the spec language's format version, the `gstc:` key of every spec


class _CheckoutRuntime(importlib.abc.MetaPathFinder):
    """Finds `gstc.runtime` in runtime/ beside gstc/ in a source checkout, installed editable or used without
    installing it (`PYTHONPATH=.`). From a wheel, gstc/runtime/ is a folder of its own and this is not used."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if name != "gstc.runtime":
            return None
        return importlib.util.spec_from_file_location(name, os.path.join(self.folder, "__init__.py"),
                                                      submodule_search_locations=[self.folder])


_here = os.path.dirname(os.path.abspath(__file__))
_beside = os.path.join(os.path.dirname(_here), "runtime")
if (not os.path.isdir(os.path.join(_here, "runtime")) and os.path.isfile(os.path.join(_beside, "__init__.py"))
        and os.path.isfile(os.path.join(os.path.dirname(_here), "pyproject.toml"))):
    # First: in a checkout, gstc.runtime is always the one beside this gstc, even when another copy of gstc
    # is installed (editable) elsewhere, so that the code that runs is the code provenance names.
    sys.meta_path.insert(0, _CheckoutRuntime(_beside))


def __getattr__(name: str):
    """`gstc.results(SPEC, out=...)`: a spec's results as DataFrames (gstc.frames), imported on first use."""
    if name == "results":
        from gstc.frames import results

        return results
    raise AttributeError(f"module 'gstc' has no attribute {name!r}")
