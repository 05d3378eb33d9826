"""gstc's PyTorch runtime, imported as `gstc.runtime`: it carries out plans (read as JSON, never YAML).

Layers, from the bottom: data, models, pruning and flatness; the trainer (`train`) with
the components that plug into its loop (`callbacks`, `checkpoint`); the unit of work
(`worker.run_pack`: claim, skip, resume, train a pack); executors (`executors/`: where
packs train); and the one driver (`driver.execute`) that `gstc run` and the tests use.
"""
