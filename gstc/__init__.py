"""gstc: compile YAML pruning-experiment specs into exact plans, run them, compare results.

This package never imports torch at module level: validating, planning, diffing and
reporting work without it (see tests/gstc/test_no_torch.py). The PyTorch runtime is the
subpackage `gstc.runtime`, whose files live in the repository's runtime/ folder (pyproject's package-dir): a
checkout is used through `pip install -e .`, whose finder maps gstc.runtime there.
"""

__version__ = "0.5.0"
FORMAT = 1  # the spec language's format version, the `gstc:` key of every spec


def __getattr__(name: str):
    """`gstc.results(SPEC, out=...)`: a spec's results as DataFrames (gstc.frames), imported on first use."""
    if name == "results":
        from gstc.frames import results

        return results
    raise AttributeError(f"module 'gstc' has no attribute {name!r}")
