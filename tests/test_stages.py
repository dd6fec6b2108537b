"""The stage registry is the one list of stages: commands, folders, YAML sections, classes."""

from __future__ import annotations

import pytest

from tmor.pipeline.stages import STAGE_NAMES, STAGES, get_stage


def test_every_registered_stage_has_its_command_and_matching_names() -> None:
    import typer.main

    from tmor.cli.data import app

    commands = set(typer.main.get_command(app).commands)
    for spec in STAGES:
        stage_cls, config_cls = spec.load()
        assert stage_cls.name == spec.name, spec  # folder = ledger = section
        assert spec.command in commands, spec.command
        assert get_stage(spec.command) is spec and get_stage(spec.name) is spec
        config_cls()  # every option has a default
    assert STAGE_NAMES == ("fetch", "pose", "caption", "embed", "triplets")
    with pytest.raises(KeyError, match="unknown stage"):
        get_stage("nope")


def test_yaml_sections_by_stage_name_or_command() -> None:
    pack = get_stage("pack")
    assert pack.sections == ("triplets", "pack")
    assert pack.options({"pack": {"min_seconds": 1.0}}) == {"min_seconds": 1.0}
    # the stage-named section wins over the command-named one
    both = {"pack": {"min_seconds": 1.0}, "triplets": {"min_seconds": 2.0, "min_mean_score": 0.1}}
    assert pack.options(both) == {"min_seconds": 2.0, "min_mean_score": 0.1}
    assert get_stage("extract-pose").options({"extract_pose": {"fps": 5}}) == {"fps": 5}
