"""The tutorial notebook runs from top to bottom (reduced mode) and is committed without outputs."""

from __future__ import annotations

import os

import nbclient
import nbformat
import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "lfads_chaotic_rnn_tutorial.ipynb"
FIGURES = ["fig1_simulated_trial", "fig2_training_curves", "fig3_raster_rates",
           "fig4_rates_vs_truth", "fig5_factors", "fig6_inferred_inputs"]

def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert any("REDUCED" in c.source for c in code[:1]), "REDUCED must be set in the first cell"


@pytest.mark.workflow
def test_notebook_runs_in_reduced_mode(tmp_path, monkeypatch):
    out = tmp_path / "output"
    monkeypatch.setenv("LFADS_TUTORIAL_REDUCED", "1")
    monkeypatch.setenv("LFADS_TUTORIAL_OUTPUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    for name in FIGURES:
        path = out / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 10_000, path
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")
    assert "REDUCED = True" in text and "rate R^2 on validation trials" in text
    assert os.environ.get("LFADS_TUTORIAL_REDUCED") == "1"
