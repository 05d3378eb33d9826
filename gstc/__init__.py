"""gstc: compile YAML pruning-experiment specs into exact plans, run them, compare results.

This package never imports torch at module level: validating, planning, diffing and
reporting work without it (see tests/gstc/test_no_torch.py).
"""

__version__ = "0.1.0"
FORMAT = 1  # the spec language's format version, the `gstc:` key of every spec
