"""How the loops run is decided in one place (lfads_core.lfads.execution), apart from the model:
what each request resolves to on each device, the warnings for requests a machine cannot meet,
and that the choice is in no model file, checkpoint or configuration of a model."""

from __future__ import annotations

import logging

import pytest
import torch

from lfads_core.errors import InputDataError
from lfads_core.lfads import execution
from lfads_core.lfads.checkpoint import load_model
from lfads_core.lfads.config import ModelConfig, TrainConfig
from lfads_core.lfads.execution import Execution, ExecutionConfig, resolve_execution
from lfads_core.lfads.loops import native
from lfads_core.lfads.training import train
from lfads_core.workflow.startup import check_config

from conftest import CONFIG
from test_training import dataset, tiny_model, tiny_train  # noqa: F401 (fixture)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(execution, "_warned", set())


@pytest.mark.parametrize("loops, device, expected", [
    ("auto", "cpu", Execution(what="fast path on CPU")),
    ("fast", "cpu", Execution(what="fast path on CPU")),
    ("reference", "cpu", Execution(impl="reference", what="reference loops")),
    ("reference", "cuda", Execution(impl="reference", what="reference loops")),
    ("auto", "cuda", Execution(cuda_graphs=True, what="cuDNN encoders + CUDA graphs")),
    ("cuda_graphs", "cuda", Execution(cuda_graphs=True, what="cuDNN encoders + CUDA graphs")),
    ("fast", "cuda", Execution(what="cuDNN encoders + decoder loop in Python")),
    ("auto", "mps", Execution(what="fast path on mps")),
])
def test_each_request_resolves_to_one_choice(loops, device, expected, caplog):
    with caplog.at_level(logging.INFO, logger="lfads_core.lfads.execution"):
        assert resolve_execution({"loops": loops}, device) == expected
    assert f"loops: {expected.what} (execution.loops {loops} on {device})" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.skipif(native.unavailable_reason() is not None, reason="no C compiler")
def test_c_loops_on_cpu_and_not_on_cuda(caplog):
    assert resolve_execution({"loops": "native"}, "cpu") == Execution(native=True,
                                                                       what="C loops on CPU")
    with caplog.at_level(logging.WARNING, logger="lfads_core.lfads.execution"):
        on_gpu = resolve_execution({"loops": "native"}, "cuda")
    assert on_gpu == Execution(cuda_graphs=True, what="cuDNN encoders + CUDA graphs")
    assert "C loops asked for, they run on CPU only: cuDNN encoders + CUDA graphs" in caplog.text


def test_a_request_that_cannot_be_met_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="lfads_core.lfads.execution"):
        for _ in range(3):
            got = resolve_execution({"loops": "cuda_graphs", "compile": True}, "cpu")
    assert got == Execution(what="fast path on CPU")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["cuda_graphs loops asked for, they run on CUDA only: fast path on CPU",
                        "compile asked for, torch.compile is used on CUDA only: not compiled on cpu"]


def test_compile_on_cuda_is_added_to_the_choice():
    got = resolve_execution(ExecutionConfig(loops="auto", compile=True), "cuda")
    assert got.compile and got.cuda_graphs and got.what.endswith("+ torch.compile")


def test_unknown_requests_are_refused():
    with pytest.raises(ValueError, match="loops must be one of auto, reference, fast"):
        ExecutionConfig(loops="gpu")
    with pytest.raises(KeyError, match="native_kernels"):
        ExecutionConfig.from_dict({"native_kernels": True})


def test_the_choice_is_no_model_setting(dataset, tmp_path):  # noqa: F811 (fixture)
    """Not in ModelConfig or TrainConfig (a file of an earlier version that holds it still
    loads), and a run trained one way resumes and samples another way."""
    assert not {"impl", "native_kernels", "cuda_graphs", "triton_decoder"} & set(ModelConfig().to_dict())
    assert "compile" not in TrainConfig().to_dict()
    old = dict(ModelConfig().to_dict(), impl="reference", native_kernels=True, cuda_graphs=True)
    assert ModelConfig.from_dict(old) == ModelConfig()
    assert TrainConfig.from_dict({"compile": True}) == TrainConfig()
    path = dataset[0]
    first = train(path, tmp_path / "run", tiny_model(), tiny_train(max_epochs=2), device="cpu",
                  execution={"loops": "reference"})
    # resume=True refuses a checkpoint of other settings: this one is resumed, not retrained
    again = train(path, tmp_path / "run", tiny_model(), tiny_train(max_epochs=2), device="cpu",
                  resume=True, execution={"loops": "fast"})
    assert (first.epochs_run, again.epochs_run) == (2, 2)
    model, *_ = load_model(again.model_path, "cpu", {"loops": "reference"})
    assert model.execution.impl == "reference"
    blob = torch.load(again.model_path, weights_only=False)
    assert "execution" not in blob and not {"impl", "native_kernels"} & set(blob["model_cfg"])


@pytest.mark.parametrize("block, key, instead", [
    ({"model": {"native_kernels": True}}, "lfads.model.native_kernels",
     "write lfads.execution.loops: native instead"),
    ({"training": {"compile": True}}, "lfads.training.compile",
     "write lfads.execution.compile: true instead"),
    ({"overrides": {"lorenz": {"model": {"impl": "reference"}}}},
     "lfads.overrides.lorenz.model.impl", "write lfads.execution.loops: reference (or fast)"),
])
def test_a_setting_of_an_earlier_version_says_what_to_write(block, key, instead):
    import copy

    from lfads_core.workflow.settings import read_schema
    from conftest import ROOT

    config = copy.deepcopy(CONFIG)
    for part, values in block.items():
        config["lfads"].setdefault(part, {})
        for name, value in values.items():
            config["lfads"][part][name] = value
    schema = read_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    with pytest.raises(InputDataError) as err:
        check_config(config, schema, [("config/config.yaml", config)])
    message = str(err.value)
    assert "config/config.yaml" in message and key in message and instead in message
