"""Every command and option of `tkds` says what it is for, and choices are offered as choices."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from tkds.cli import cli

COMMANDS = sorted(cli.commands.items())


def _options(command: click.Command) -> list[click.Option]:
    return [param for param in command.params if isinstance(param, click.Option)]


def test_the_walk_sees_every_command() -> None:
    assert {"synth", "twin", "collect", "import", "shard", "bench", "demo", "serve"} <= set(cli.commands)


@pytest.mark.parametrize(("name", "command"), COMMANDS)
def test_every_command_and_option_has_help(name: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"tkds {name} has no docstring"
    missing = [option.opts[0] for option in _options(command) if not (option.help or "").strip()]
    assert not missing, f"tkds {name}: options without help text: {', '.join(missing)}"
    for argument in (param for param in command.params if isinstance(param, click.Argument)):
        assert argument.human_readable_name in command.help, f"tkds {name}'s docstring never names it"


@pytest.mark.parametrize(("name", "command"), COMMANDS)
def test_help_pages_render_and_show_choices(name: str, command: click.Command) -> None:
    page = CliRunner().invoke(cli, [name, "--help"], terminal_width=100)
    assert page.exit_code == 0, page.output
    for option in _options(command):
        if isinstance(option.type, click.Choice):
            assert "|".join(map(str, option.type.choices)) in page.output.replace("\n", " "), option.opts


def test_preset_offers_the_registry_and_tasks_methods_name_theirs() -> None:
    from tkds.benchmarks.run import REFERENCE_METHODS
    from tkds.benchmarks.tasks import TASKS
    from tkds.models.methods import METHODS
    from tkds.models.presets import PRESETS

    options = {option.name: option for option in _options(cli.commands["bench"])}
    assert isinstance(options["preset"].type, click.Choice)
    assert tuple(options["preset"].type.choices) == tuple(PRESETS)
    for task in TASKS:
        assert task in options["tasks"].help
    for method in [*METHODS, *REFERENCE_METHODS]:
        assert method in options["methods"].help


def test_unknown_preset_is_one_line_naming_the_choices(tmp_path, capsys) -> None:
    from tkds.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--shards", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "cpu-huge"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert error.count("\n") == 1 and "'cpu-huge' is not one of" in error and "cpu-tiny" in error


def test_twin_default_ca_file_is_the_readmes() -> None:
    (ca_out,) = (option for option in _options(cli.commands["twin"]) if option.name == "ca_out")
    assert str(ca_out.default) == "twin-ca.pem"
