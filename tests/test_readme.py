"""The README's commands, as written there, so that they cannot drift from the workflow."""

import importlib.util
import shlex
import subprocess
import sys

import pytest

from conftest import PLOT_RULES, ROOT, readme_commands

COMMANDS = readme_commands("README.md", "config/README.md")
# Commands that need finished results; tests/test_workflow.py runs them on a real run.
NEED_RESULTS = ("--report", "--allowed-rules")
# Commands on a lab's own files and folders; tests/test_project_folder.py makes them and runs these.
OWN_FILES = ("my_lab.tsv", "my_sheet.tsv", "/path/to/")


def test_the_readme_has_its_commands():
    assert any("datasets_mc_maze_small.tsv" in c and "results/" in c for c in COMMANDS)
    assert any("tutorial_chaotic_rnn.yaml" in c for c in COMMANDS)


@pytest.mark.workflow
@pytest.mark.parametrize("command", sorted(set(COMMANDS)))
def test_readme_command_parses_and_plans(command):
    """Each command, run from the project root as the README says, plans its jobs (dry run)."""
    if any(flag in command for flag in NEED_RESULTS):
        pytest.skip("needs finished results; run by tests/test_workflow.py")
    if any(name in command for name in OWN_FILES):
        pytest.skip("names a lab's own files; run by tests/test_project_folder.py")
    if "profiles/slurm" in command and not importlib.util.find_spec(
            "snakemake_executor_plugin_slurm"):
        pytest.skip("the SLURM executor plugin is not installed (tests/test_slurm.py runs it)")
    args = shlex.split(command)[1:]
    result = subprocess.run([sys.executable, "-m", "snakemake", *args, "-n"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}"
    assert "dry-run" in result.stdout or "Nothing to be done" in result.stdout


def test_the_figures_command_is_the_one_test_workflow_runs():
    (command,) = [c for c in COMMANDS if "--allowed-rules" in c]
    assert command.split("--allowed-rules ")[1].split() == PLOT_RULES
    assert "figures --forceall" in command
