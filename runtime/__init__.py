"""The PyTorch runtime that executes gstc plans (issue 3). It reads plans as JSON only."""
