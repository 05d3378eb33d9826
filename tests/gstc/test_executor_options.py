"""Each executor's options are one typed object; an option names the executors that read it, once, and the
command line refuses an option the chosen executor would ignore."""

from __future__ import annotations

import dataclasses

import pytest

from gstc import executor_options as eo


def test_every_option_belongs_to_the_executors_whose_options_have_it():
    owners = eo.owners()
    assert owners["--gpus"] == ["local"] and owners["--address"] == ["ray"]
    assert owners["--cpus-per-task"] == ["ray", "slurm"]
    assert {o for o, kinds in owners.items() if kinds == ["slurm"]} == {
        "--slurm-partition", "--slurm-time", "--slurm-gpus", "--slurm-cluster", "--slurm-mem", "--slurm-account",
        "--slurm-qos", "--slurm-option"}


def test_an_option_of_another_executor_is_refused_naming_the_ones_that_read_it():
    with pytest.raises(eo.OptionError) as err:
        eo.build("local", {"--cpus-per-task": 4})
    assert err.value.option == "--cpus-per-task"
    assert str(err.value) == "--cpus-per-task goes with --executor ray or --executor slurm, not --executor local"


def test_options_not_given_are_the_defaults_and_given_ones_land_in_their_fields():
    given = {"--gpus": None, "--address": None, "--slurm-time": "1:00", "--slurm-option": ["constraint=a100"],
             "--cpus-per-task": 2, "--slurm-mem": None}
    options = eo.build("slurm", given, device="cpu", track=["mlflow"])
    assert options == eo.SlurmOptions(device="cpu", track=("mlflow",), time="1:00", options=("constraint=a100",),
                                      cpus=2)
    assert eo.build("ray", {"--slurm-time": None}) == eo.RayOptions()


def test_the_options_are_frozen_data():
    options = eo.LocalOptions(device="cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cuda"  # type: ignore[misc]
