"""A methods section for one dataset, written from the run's settings, summaries, scores and
provenance records (``results/{dataset}/methods.md``): data and preprocessing, model,
training and selection (which split chose what), evaluation with its splits and numbers,
software versions and the works to cite. Meant to be pasted into a paper and edited.

:func:`load_run_record` reads a run's files into a :class:`RunRecord`; :func:`methods_markdown`
writes the text from it (no file access, so any record can be tested).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from ..fileio import atomic_path
from ..nwb.alignment import window_offsets_s

REFERENCES = {
    "lfads": "Sussillo D, Jozefowicz R, Abbott LF, Pandarinath C (2016). LFADS - Latent Factor "
             "Analysis via Dynamical Systems. arXiv:1608.06315.",
    "lfads2018": "Pandarinath C, O'Shea DJ, Collins J, Jozefowicz R, Stavisky SD, Kao JC, "
                 "Trautmann EM, Kaufman MT, Ryu SI, Hochberg LR, Henderson JM, Shenoy KV, "
                 "Abbott LF, Sussillo D (2018). Inferring single-trial neural population "
                 "dynamics using sequential auto-encoders. Nature Methods 15:805-815. "
                 "doi:10.1038/s41592-018-0109-9.",
    "autolfads": "Keshtkaran MR, Sedler AR, Chowdhury RH, Tandon R, Basrai D, Nguyen SL, Sohn H, "
                 "Jazayeri M, Miller LE, Pandarinath C (2022). A large-scale neural network "
                 "training framework for generalized estimation of single-trial population "
                 "dynamics. Nature Methods 19:1572-1577. doi:10.1038/s41592-022-01675-0.",
    "pbt": "Jaderberg M, Dalibard V, Osindero S, Czarnecki WM, Donahue J, Razavi A, Vinyals O, "
           "Green T, Dunning I, Simonyan K, Fernando C, Kavukcuoglu K (2017). Population Based "
           "Training of Neural Networks. arXiv:1711.09846.",
    "nlb": "Pei F, Ye J, Zoltowski D, Wu A, Chowdhury RH, Sohn H, O'Doherty JE, Shenoy KV, "
           "Kaufman MT, Churchland M, Jazayeri M, Miller LE, Pillow J, Park IM, Dyer EL, "
           "Pandarinath C (2021). Neural Latents Benchmark '21: Evaluating latent variable "
           "models of neural population activity. arXiv:2109.04463.",
}
SOFTWARE = {"lfads-core": "lfads_core", "torch": "PyTorch", "numpy": "NumPy", "h5py": "h5py",
            "pynwb": "PyNWB", "snakemake": "Snakemake"}
METHOD_NAMES = {"lfads": "LFADS", "lfads stitched": "LFADS (stitched model)",
                "lfads single-session": "LFADS (single-session model)",
                "smoothing": "spike smoothing", "truth": "the true rates (simulation)"}
DECODER_NAMES = {"lfads_rates": "LFADS rates", "lfads_factors": "LFADS factors",
                 "smoothed_spikes": "smoothed spikes", "binned_spikes": "binned spikes",
                 "smoothed_traces": "smoothed traces", "binned_traces": "binned traces"}
METRICS = ("co-bps", "fp-bps", "heldout_ll_gain", "heldout_r2", "vel R2", "psth R2",
           "rate R2 (truth)", "latent R2 (truth)")
METRIC_NAMES = {"vel R2": "vel R^2", "psth R2": "PSTH R^2",
                "heldout_ll_gain": "held-out log-likelihood gain (bits per observed entry)",
                "heldout_r2": "held-out R^2",
                "rate R2 (truth)": "rate R^2 against the true rates",
                "latent R2 (truth)": "latent R^2 against the true latents"}
CHOICES = {"early stopping": "the choice of the kept epoch and early stopping",
           "learning-rate plateau": "the learning-rate schedule",
           "sweep selection": "the sweep's choice of a model",
           "PBT selection": "population-based training's choices of models"}
LIKELIHOODS = {"poisson": "Poisson", "gaussian": "Gaussian", "gamma": "Gamma",
               "zig": "zero-inflated Gamma"}


@dataclass
class RunRecord:
    """What the methods text of one dataset reads.

    settings: the dataset's resolved settings (sheet row over the defaults); ingest,
    alignment, metadata: ``ingest/summary.json``, ``align/summary.json``,
    ``lfads_input.json``; training: the used run's resolved ``config.yaml``; metrics: rows of
    ``metrics.tsv``; decoding: rows of ``decoding/summary.tsv`` (None without behaviour);
    evaluation: config ``evaluation`` as the scores read it; selections: what chose anything
    on the validation trials; versions: package -> versions found in the provenance records;
    search: ``{"method": "sweep" | "pbt", "config": ..., "table": DataFrame}`` (None without);
    group: ``{"name": ..., "sessions": [...]}`` for a stitched session (None otherwise).
    """

    dataset: str
    settings: dict
    ingest: dict
    alignment: dict
    metadata: dict
    training: dict
    metrics: pd.DataFrame
    evaluation: dict
    selections: list[str]
    versions: dict[str, list[str]] = field(default_factory=dict)
    decoding: pd.DataFrame | None = None
    search: dict | None = None
    group: dict | None = None


def collect_versions(records: list[dict]) -> dict[str, list[str]]:
    """Package -> the distinct versions named by the provenance records (in their order)."""
    found: dict[str, list[str]] = {}
    for record in records:
        for package, version in (record.get("versions") or {}).items():
            if version and version not in found.setdefault(package, []):
                found[package].append(version)
    return found


def load_run_record(dataset: str, settings: dict, files: dict, evaluation: dict,
                    selections: list[str], search: dict | None = None,
                    group: dict | None = None) -> RunRecord:
    """Read a run's files (``files``: ``ingest``, ``alignment``, ``metadata``, ``training``,
    ``metrics``, ``provenance`` (a list), and ``decoding``, ``selection`` where present) into a
    :class:`RunRecord`. ``search``: ``{"method": ..., "config": ...}``, the table is read from
    ``files["selection"]``."""
    def read_json(path):
        return json.loads(Path(path).read_text())

    table = pd.read_csv(files["selection"], sep="\t") if files.get("selection") else None
    return RunRecord(
        dataset=dataset, settings=dict(settings), ingest=read_json(files["ingest"]),
        alignment=read_json(files["alignment"]), metadata=read_json(files["metadata"]),
        training=yaml.safe_load(Path(files["training"]).read_text()),
        metrics=pd.read_csv(files["metrics"], sep="\t"), evaluation=dict(evaluation),
        selections=list(selections),
        versions=collect_versions([read_json(p) for p in files.get("provenance", [])]),
        decoding=pd.read_csv(files["decoding"], sep="\t") if files.get("decoding") else None,
        search=None if search is None else {**search, "table": table}, group=group)


# ------------------------------------------------------------------ wording helpers

def _num(value, digits: int = 3) -> str:
    """A number as a person writes it: up to ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and
                                  abs(value) < 1e6):
        return str(int(value))
    return f"{value:.{digits}g}"


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _reasons(counts: dict) -> str:
    return _join([f"{n} {why}" for why, n in counts.items()])


def _a(word) -> str:
    """The indefinite article before a word or a number as spoken."""
    text = str(word).lower()
    vowel = text[:1] in "aeiou" or text.startswith("8") or text in ("11", "18")
    return "an" if vowel and text[:1] not in ("u",) else "a"


def _device(device: str) -> str:
    if device.startswith("cuda"):
        return f"a CUDA GPU ({device})"
    return {"cpu": "the CPU", "mps": "an Apple GPU (MPS)"}.get(device, device)


def _best_loss(run: dict, keys=("best_valid_loss_smooth", "best_valid_metric_smooth")) -> float:
    """The kept epoch's smoothed validation loss of a run's ``config.yaml`` (nats per trial),
    the first of ``keys`` present (``best_valid_metric_smooth``: the name of earlier versions;
    a PBT member's own ``valid_loss_smooth`` first for PBT)."""
    for key in keys:
        if run.get(key) is not None:
            return float(run[key])
    return float("nan")


def _choices(selections) -> str:
    """What chose on the validation trials, in words."""
    return _join([CHOICES.get(s, s) for s in selections])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def headline_split(metrics: pd.DataFrame) -> str:
    """The split scores are reported on: the test trials where there are any."""
    return "test" if "split" in metrics and (metrics["split"] == "test").any() else "valid"


# ------------------------------------------------------------------ the paragraphs

def _is_traces(r: RunRecord) -> bool:
    """Whether the run modelled calcium imaging traces (ROIs, frames) rather than spikes."""
    return str((r.metadata or {}).get("kind", "spikes")) == "traces"


def _data(r: RunRecord) -> str:
    s, ing, al, meta = r.settings, r.ingest, r.alignment, r.metadata
    traces = _is_traces(r)
    unit = "ROI" if traces else "unit"
    source = Path(str(meta.get("source") or s.get("nwb", ""))).name
    text = [f"We analysed the recording {source} (SHA-256 {meta.get('source_sha256', 'n/a')})."]
    kept, total = ing.get("units_kept"), ing.get("units_in_file")
    dropped = ing.get("unit_drop_reasons") or {}
    filters = _join([f"unit filter `{s['unit_filter']}`" if s.get("unit_filter") else "",
                     f"a minimum rate of {_num(float(s['min_rate_hz']))} spikes/s"
                     if float(s.get("min_rate_hz") or 0) > 0 else ""])
    if traces:
        filters = f"ROI filter `{s['roi_filter']}`" if s.get("roi_filter") else ""
        text.append(f"Its calcium imaging traces ({_join([f'`{x}`' for x in ing.get('traces') or [s.get('traces')]])}, "
                    f"{ing.get('frames')} frames at {_num(float(ing.get('frame_rate_hz', 0)))} Hz) "
                    "were modelled instead of spikes, each region of interest (ROI) a channel.")
    text.append((f"All {total} of its {unit}s were kept" if kept == total else
                 f"{kept} of its {total} {unit}s were kept")
                + (f" (left out: {_reasons(dropped)}; {filters})" if dropped and filters else
                   f" (left out: {_reasons(dropped)})" if dropped else
                   f" ({filters})" if filters else "") + ".")
    n_out, n_in = al.get("n_heldout", 0), al.get("n_heldin")
    heldout = str(meta.get("heldout_mode", s.get("heldout", "file")))
    how = ("as marked in the recording's ROI table" if traces else
           "as marked in the recording's units table") if heldout == "file" else \
        f"chosen at random, {_num(100 * float(heldout))}% of the {unit}s (seed {s.get('seed', 0)})" \
        if heldout != "none" else ""
    if n_out:
        text.append(f"{n_out} of them were held out of the model's input ({how}); their "
                    + ("values" if traces else "rates")
                    + " were only predicted from the latent factors, to score "
                    + ("held-out ROI prediction" if traces else "co-smoothing")
                    + f", leaving {n_in} held-in {unit}s.")
    else:
        text.append(f"No {unit} was held out; all {n_in} were input to the model.")
    if _continuous(r):
        text += _segment_sentences(r)
    else:
        text += _trial_sentences(r)
    behavior = meta.get("behavior_columns") or []
    if behavior:
        text.append(f"The behaviour ({_join([f'`{c}`' for c in behavior])}) was low-pass "
                    "filtered for the bin width and sampled at the bin centres.")
    if al.get("windows_outside_trial"):
        text.append(f"{al['windows_outside_trial']} windows reached outside their trial's start "
                    "and stop times and were kept.")
    return "**Data and preprocessing.** " + " ".join(text)


def _trial_sentences(r: RunRecord) -> list[str]:
    """The window, the trials per split and the conditions, in words."""
    s, ing, al, meta = r.settings, r.ingest, r.alignment, r.metadata
    traces = _is_traces(r)
    text = []
    bin_ms = 1e3 * float(meta["bin_width_s"])
    start_ms, end_ms = (1e3 * value for value in window_offsets_s(meta))
    event = meta.get("align_event", s.get("align_event"))
    fp = int(al.get("fp_bins", 0) or 0)
    if traces:
        frames = int(meta.get("bin_frames", 1))
        period_ms = 1e3 * float(meta.get("frame_period_s", bin_ms / 1e3 / frames))
        text.append(f"The traces were averaged in bins of {_plural(frames, 'frame')} "
                    f"({_num(bin_ms)} ms; frame period {_num(period_ms)} ms) on the imaging "
                    "clock, each bin the mean of its observed frames; frames that were not "
                    f"observed (NaN, {_num(100 * float(ing.get('nan_fraction', 0)))}% of the "
                    "values) were left out of the means, of the model's loss and of every score.")
    text.append(("Each" if traces else f"Spikes were counted in {_num(bin_ms)} ms bins on one "
                 "grid from the recording's start. Each") + f" trial's window ran from {_num(start_ms)} to {_num(end_ms)} ms "
                f"around its `{event}` ({al.get('n_bins_window')} bins, starting at the bin "
                f"edge nearest to the event {'-' if start_ms < 0 else '+'} "
                f"{_num(abs(start_ms))} ms)"
                + (f", followed by {_plural(fp, 'forward-prediction bin')} that the model "
                   "predicted without seeing them" if fp else "") + ".")
    trial_filter = f" after the trial filter `{s['trial_filter']}`" if s.get("trial_filter") else ""
    table = str(meta.get("trials_table") or ing.get("trials_table") or "trials")
    # the recording's table the trials came from, named where it is not NWB's trials table
    of_table = "" if table == "trials" else \
        f" of the recording's `{table}` table (intervals/{table})"
    table_words = "trials table's" if table == "trials" else f"`{table}` table's"
    n_train, n_valid, n_test = (int(al.get(f"{k}_trials", 0)) for k in ("train", "valid", "test"))
    if meta.get("split_mode", s.get("split")) == "random":
        split = (f"drawn at random (seed {s.get('seed', 0)}; validation fraction "
                 f"{_num(float(s.get('valid_fraction', 0)))}, test fraction "
                 f"{_num(float(s.get('test_fraction', 0) or 0))})")
    else:
        split = f"taken from the {table_words} `split` column (labels: {s.get('split_labels')})"
        if n_test and float(s.get("test_fraction") or 0) > 0:
            split += (f", with {_num(float(s['test_fraction']))} of the trials held out for "
                      "testing (the file's test-labelled trials, or, where it labels none, "
                      f"drawn from its training trials with seed {s.get('seed', 0)})")
    drops = al.get("drop_reasons") or {}
    text.append(f"Of the {al.get('trials_in_file')} trials{of_table}{trial_filter}, "
                f"{n_train + n_valid + n_test} were modelled: {n_train} training, {n_valid} "
                f"validation and {n_test} test trials, {split}"
                + (f"; {al.get('dropped_trials')} were left out ({_reasons(drops)})"
                   if drops else "") + ".")
    conditions = (meta.get("conditions") or {})
    columns = conditions.get("columns") or []
    if columns:
        text.append(f"Conditions were the {len(conditions.get('values') or [])} combinations "
                    f"of {_join([f'`{c}`' for c in columns])}.")
    return text


def _continuous(r: RunRecord) -> bool:
    """Whether the dataset is a continuous recording cut into segments (its metadata says)."""
    return "segments" in (r.metadata or {})


def _segment_sentences(r: RunRecord) -> list[str]:
    """The segments, their overlap and the blocks of time they were split by, in words."""
    s, al, meta = r.settings, r.alignment, r.metadata
    seg = meta["segments"]
    bin_ms = 1e3 * float(meta["bin_width_s"])
    fp = int(seg.get("fp_bins", 0) or 0)
    blocks = seg.get("blocks") or []
    per_split = {k: sum(b["split"] == k for b in blocks) for k in ("train", "valid", "test")}
    n = {k: int(al.get(f"{k}_segments", 0)) for k in ("train", "valid", "test")}
    text = [f"Spikes were counted in {_num(bin_ms)} ms bins on one grid from the recording's "
            f"start. The recording has no trials: its observed time was cut into overlapping "
            f"segments of {_num(float(seg['length_ms']))} ms ({seg['length_bins']} bins"
            + (f", followed by {_plural(fp, 'forward-prediction bin')} that the model "
               "predicted without seeing them" if fp else "")
            + f"), consecutive segments starting {seg['step_bins']} bins apart so that their "
            f"windows overlap by {_num(float(seg['overlap_ms']))} ms ({seg['overlap_bins']} "
            "bins); no segment bridges a gap in the observed time.",
            f"The observed time was divided into {len(blocks)} contiguous blocks of equal "
            f"duration, {per_split['train']} for training, {per_split['valid']} for validation "
            f"and {per_split['test']} for testing (drawn with seed {s.get('seed', 0)}), and "
            f"segments were tiled within each block, so no training segment overlaps a "
            f"validation or test bin: {n['train']} training, {n['valid']} validation and "
            f"{n['test']} test segments"
            + (f"; {al.get('dropped_segments')} were left out "
               f"({_reasons(al.get('drop_reasons') or {})})" if al.get("dropped_segments")
               else "") + "."]
    return text


def _model(r: RunRecord) -> str:
    m = r.training["model"]
    version = (r.versions.get("lfads-core") or ["n/a"])[0]
    parts = [f"We fitted LFADS (Sussillo et al. 2016; Pandarinath et al. 2018), as implemented "
             f"in lfads_core {version} (lfads-workflow): bidirectional GRU encoders "
             f"({m['ic_enc_dim']} units per direction for the initial condition"]
    controller = int(m.get("con_dim", 0)) > 0 and int(m.get("co_dim", 0)) > 0
    if controller:
        parts[0] += f", {m['ci_enc_dim']} for the controller's input"
    parts[0] += (f"), {_a(m['ic_dim'])} {m['ic_dim']}-dimensional initial condition with a "
                 f"learned Gaussian prior, a generator GRU of {m['gen_dim']} units read out to "
                 f"{_plural(int(m['fac_dim']), 'factor')}")
    if controller:
        prior = (f"an autoregressive prior (time constant {_num(float(m['co_prior_tau']))} bins)"
                 if m.get("co_prior") == "ar1" else "a Gaussian prior")
        parts[0] += (f", and a controller GRU of {m['con_dim']} units inferring "
                     f"{_plural(int(m['co_dim']), 'input')} per bin with {prior}")
    else:
        parts[0] += " and no controller (no inferred inputs)"
    likelihood = LIKELIHOODS.get(m.get("likelihood", "poisson"), m.get("likelihood"))
    parts[0] += (f"; rates came from the factors through {_a(likelihood)} {likelihood} "
                 + ("observation model of each ROI's values per bin (rates: the expected "
                    "value per bin, in the traces' unit)." if _is_traces(r) else
                    "observation model of each unit's counts per bin."))
    if r.group:
        sessions = r.group["sessions"]
        parts.append(f"One model was trained on the {len(sessions)} sessions of the group "
                     f"`{r.group['name']}` ({_join([f'`{x}`' for x in sessions])}; stitching, "
                     f"Pandarinath et al. 2018): encoders, controller and generator were shared, "
                     "and each session had its own linear read-in to "
                     + (f"{m['readin_dim']} dimensions" if m.get("readin_dim") else
                        "as many dimensions as the fewest held-in units of the sessions")
                     + " and read-out"
                     + (", initialised from principal components of condition-averaged smoothed "
                        "rates shared across the sessions (training trials only)"
                        if m.get("readin_init") == "align" else "")
                     + (", kept fixed during training" if not m.get("train_readin", True)
                        else "") + ".")
    t = r.training["training"]
    regs = [f"dropout {_num(float(m['dropout_rate']))}",
            f"coordinated dropout {_num(float(m['cd_rate']))}" if float(m.get("cd_rate", 0))
            else "", f"sample validation {_num(float(m['sv_rate']))}"
            if float(m.get("sv_rate", 0)) else "",
            f"L2 penalties on the recurrent weights ({_num(float(t['l2_gen_scale']))} generator"
            + (f", {_num(float(t['l2_con_scale']))} controller" if controller else "") + ")",
            f"KL terms weighted {_num(float(t['kl_ic_scale']))} (initial condition)"
            + (f" and {_num(float(t['kl_co_scale']))} (inferred inputs)" if controller else "")
            + f", ramped in over {t['kl_ic_ramp_epochs']} epochs"]
    parts.append(f"Regularisation: {_join(regs)}.")
    return "**Model.** " + " ".join(parts)


def _settings_text(values: dict) -> str:
    return ", ".join(f"{k} = {_num(v) if isinstance(v, (int, float)) else v}"
                     for k, v in values.items())


def _training(r: RunRecord) -> str:
    t, c = r.training["training"], r.training
    method = (r.search or {}).get("method")
    device = _device(str(c.get("device", "n/a")))
    parts = []
    if method == "pbt":
        cfg = r.search["config"]
        ranges = _join([f"`{k}` {_num(float(v['low']))}-{_num(float(v['high']))} "
                        f"({v.get('scale', 'log')})"
                        for k, v in (cfg.get("parameters") or {}).items()])
        n_exploit = max(1, math.ceil(float(cfg["exploit_fraction"]) * int(cfg["population"])))
        chosen = r.training.get("settings") or {}
        parts.append(
            f"The model's hyperparameters were tuned by population-based training (Jaderberg "
            f"et al. 2017) as in AutoLFADS (Keshtkaran et al. 2022): {cfg['population']} models "
            f"trained side by side on the training trials for {cfg['generations']} generations of "
            f"{cfg['epochs_per_generation']} epochs (AdamW, batches of {t['batch_size']} trials, "
            f"gradient norm clipped at {_num(float(t['grad_clip']))}; on {device}), searching "
            f"{ranges}. After each generation "
            + ("the model with the highest smoothed validation loss copied the weights and "
               "settings of the one with the lowest" if n_exploit == 1 else
               f"the {n_exploit} models with the highest smoothed validation loss copied the "
               f"weights and settings of one of the {n_exploit} with the lowest")
            + " and multiplied each setting by one of "
            f"{_join([_num(float(f)) for f in cfg['explore_factors']])}"
            + (f" (or, with probability {_num(float(cfg['resample_probability']))}, redrew it)"
               if float(cfg.get("resample_probability", 0)) else "")
            + f" (seed {cfg.get('seed', 0)}). The model with the lowest smoothed validation "
            f"loss in the last generation "
            f"({_num(_best_loss(c, ('valid_loss_smooth', 'best_valid_loss_smooth')), 5)} "
            "nats per trial) was "
            f"used; its settings: {_settings_text(chosen)}.")
    else:
        parts.append(
            f"The model was trained on the training trials with AdamW (learning rate "
            f"{_num(float(t['lr']))}, betas {_num(float(t['adam_beta1']))} and "
            f"{_num(float(t['adam_beta2']))}, weight decay {_num(float(t['weight_decay']))}, "
            f"batches of {t['batch_size']} trials, gradient norm clipped at "
            f"{_num(float(t['grad_clip']))}) for at most {t['max_epochs']} epochs on {device}. "
            f"The learning rate was multiplied by {_num(float(t['lr_factor']))} whenever the "
            f"smoothed validation loss (exponential moving average, decay "
            f"{_num(float(t['loss_smoothing']))}) had not improved for {t['lr_patience']} epochs "
            f"(floor {_num(float(t['lr_min']))}"
            + (", where training stopped" if t.get("stop_at_lr_min", True) else "")
            + f"), and training stopped after {t['early_stop_patience']} epochs without "
            f"improvement (counted after {t['early_stop_burn_in']} epochs). It ran "
            f"{c.get('epochs_run')} epochs ({c.get('stop_reason')}); the weights of epoch "
            f"{c.get('best_epoch')}, whose smoothed validation loss was the lowest "
            f"({_num(_best_loss(c), 5)} nats per "
            f"trial), were kept.")
        if method == "sweep":
            table = r.search.get("table")
            cfg = r.search["config"]
            params = _join([f"`{k}`" for k in (cfg.get("parameters") or {})])
            n_runs = len(table) if table is not None else "several"
            chosen = ""
            if table is not None and "selected" in table:
                row = table[table["selected"].astype(bool)].iloc[0]
                values = {k: row[k] for k in table.columns if "." in k}
                chosen = f" ({row['run']}: {_settings_text(values)})"
            parts.append(f"{n_runs} such models were trained over a {cfg.get('method')} sweep of "
                         f"{params}, and the one with the lowest smoothed validation loss was "
                         f"used{chosen}.")
    headline = headline_split(r.metrics)
    if headline == "test":
        parts.append(f"Only the training trials updated the weights; the validation trials "
                     f"were read by {_choices(r.selections)}; the test trials were read by no "
                     "training or selection step, only to score the model.")
    else:
        parts.append(f"Only the training trials updated the weights; the validation trials "
                     f"were read by {_choices(r.selections)}. There were no test trials.")
    parts.append(f"Factors, firing rates and inferred inputs are posterior means over "
                 f"{t['posterior_samples']} samples per trial.")
    return "**Training and model selection.** " + " ".join(parts)


def _score(table: pd.DataFrame, method: str, metric: str, split: str) -> str | None:
    rows = table[(table["method"] == method) & (table["metric"] == metric) &
                 (table["split"] == split)]
    if rows.empty:
        return None
    row = rows.iloc[0]
    err = row.get("err")
    value = f"{float(row['value']):.3f}"
    return value + (f" ± {float(err):.3f}" if err is not None and pd.notna(err) else "")


def _evaluation(r: RunRecord) -> str:
    if _continuous(r):
        return _evaluation_continuous(r)
    e = r.evaluation
    split = headline_split(r.metrics)
    rows = r.metrics[r.metrics["split"] == split]
    n_trials = int(rows["n_trials"].iloc[0]) if "n_trials" in rows and len(rows) else None
    seen = rows["seen_by"].iloc[0] if "seen_by" in rows and len(rows) else ""
    names = {"test": "test", "valid": "validation"}
    fp = int(r.alignment.get("fp_bins", 0) or 0)
    behavior = r.metadata.get("behavior_columns") or []
    decoding = e.get("decoding", {})
    traces = _is_traces(r)
    likelihood = LIKELIHOODS.get(r.training["model"].get("likelihood"), "the model's")
    parts = [("We report held-out ROI prediction: the held-out ROIs' log-likelihood under the "
              f"model's {likelihood} observation model with the predicted means (its other "
              "parameters constants per ROI fitted on the training trials) over that of each "
              "ROI's null (the same family fitted to the ROI as a constant on the training "
              "trials), in bits per observed entry (heldout_ll_gain), and the R^2 of the "
              "predicted means against the values, per held-out ROI (heldout_r2)"
              + (f", vel R^2 (a ridge regression from the inferred rates to "
                 f"{_join([f'`{b}`' for b in behavior])}, fitted on the training trials with "
                 f"its penalty chosen by {decoding.get('inner_folds')}-fold cross-validation "
                 "within them)" if behavior else "")
              + " and PSTH R^2 (condition-averaged predicted means of the held-out ROIs against "
              f"their condition-averaged values smoothed with a {e.get('psth_sigma_ms')} ms "
              "Gaussian). Entries that were not observed (NaN) are left out of every score.")
             if traces else "Following the Neural Latents Benchmark (Pei et al. 2021), we report co-smoothing "
             "(co-bps: the held-out units' Poisson log-likelihood under the predicted rates "
             "over that of each unit's mean rate, in bits per spike)"
             + (f", forward prediction (fp-bps, the same over the {fp} bins after the window)"
                if fp else "")
             + (f", vel R^2 (a ridge regression from the inferred rates to "
                f"{_join([f'`{b}`' for b in behavior])}, fitted on the training trials with its "
                f"penalty chosen by {decoding.get('inner_folds')}-fold cross-validation within "
                "them)" if behavior else "")
             + f" and PSTH R^2 (condition-averaged predicted rates of the held-out units against "
             f"their condition-averaged spikes smoothed with a {e.get('psth_sigma_ms')} ms "
             "Gaussian)."]
    seen_text = ("which no training or selection step saw" if seen in ("none", "") else
                 f"which {_choices(seen.split('; '))} read, so the scores are optimistic")
    parts.append(f"Scores are on the {n_trials} {names[split]} trials, {seen_text}; ± gives the "
                 f"bootstrap standard error over trials ({e.get('n_bootstrap')} resamplings, "
                 f"seed {e.get('seed')}). "
                 + ("The baseline is trace smoothing: held-in traces, their missing frames "
                    "interpolated in time, smoothed with a "
                    f"{e.get('smoothing_sigma_ms')} ms Gaussian kernel and mapped to the "
                    "held-out ROIs by a ridge regression fitted on the training trials."
                    if traces else
                    "The baseline is NLB's spike smoothing (held-in spikes smoothed with a "
                    f"{e.get('smoothing_sigma_ms')} ms Gaussian kernel, a Poisson GLM per "
                    "held-out unit)."))
    results = []
    methods = [m for m in METHOD_NAMES if m in set(rows["method"])]
    for method in methods:
        scores = [(metric, _score(rows, method, metric, split)) for metric in METRICS]
        scores = [f"{METRIC_NAMES.get(metric, metric)} {value}" for metric, value in scores
                  if value]
        if scores:
            name = "trace smoothing" if traces and method == "smoothing" else METHOD_NAMES[method]
            results.append(f"{name}: {', '.join(scores)}")
    if results:
        parts.append("Results (" + names[split] + " trials): " + "; ".join(results) + ".")
    if r.decoding is not None and len(r.decoding):
        dec = r.decoding[r.decoding["target"] == "all"] if "target" in r.decoding else r.decoding
        values = [f"{DECODER_NAMES.get(row['method'], row['method'])} {float(row['r2']):.3f}"
                  + (f" ± {float(row['r2_sem']):.3f}" if pd.notna(row.get("r2_sem")) else "")
                  for _, row in dec.iterrows()]
        dec_split = names.get(str(dec["split"].iloc[0]), dec["split"].iloc[0]) if len(dec) \
            else split
        lag = decoding.get("lag_ms", 0)
        parts.append(f"Behaviour was decoded bin by bin"
                     + (f" (neural data {lag} ms before the behaviour)" if lag else "")
                     + " by ridge regression fitted on the training trials (penalty chosen by "
                     f"{decoding.get('inner_folds')}-fold cross-validation within them) from "
                     "LFADS rates and factors and, for comparison, from smoothed and binned "
                     + ("traces (missing frames interpolated)" if traces else "spikes")
                     + f"; R^2 over all behaviour dimensions on the {dec_split} trials: "
                     + "; ".join(values) + ".")
    return "**Evaluation.** " + " ".join(parts)


def _evaluation_continuous(r: RunRecord) -> str:
    e = r.evaluation
    split = headline_split(r.metrics)
    rows = r.metrics[r.metrics["split"] == split]
    seen = rows["seen_by"].iloc[0] if "seen_by" in rows and len(rows) else ""
    names = {"test": "test", "valid": "validation"}
    blocks = [b for b in r.metadata["segments"].get("blocks") or [] if b["split"] == split]
    fp = int(r.metadata["segments"].get("fp_bins", 0) or 0)
    behavior = r.metadata.get("behavior_columns") or []
    decoding = e.get("decoding", {})
    lag = decoding.get("lag_ms", 0)
    seen_text = ("which no training or selection step saw" if seen in ("none", "") else
                 f"which {_choices(seen.split('; '))} read, so the scores are optimistic")
    parts = [
        "The model's rates, factors and inferred inputs of overlapping segments were merged "
        "back onto the recording's bin grid: at each bin, the mean of the segments covering it, "
        "weighted linearly across each overlap (a cross-fade from one segment to the next), "
        "over the segments' windows; bins no segment covers are left empty. Every score below "
        "is computed on these merged bins, each bin counted once, in stretches of consecutive "
        "bins within a block of time.",
        "Following the Neural Latents Benchmark (Pei et al. 2021), we report co-smoothing "
        "(co-bps: the held-out units' Poisson log-likelihood under the merged predicted rates "
        "over that of each unit's mean rate, in bits per spike)"
        + (f", forward prediction (fp-bps, the same over the {fp} bins after each segment's "
           "window, scored segment by segment)" if fp else "")
        + (f" and vel R^2 (a ridge regression from the merged rates to "
           f"{_join([f'`{b}`' for b in behavior])}, fitted on the training blocks with its "
           f"penalty chosen by {decoding.get('inner_folds')}-fold cross-validation over their "
           "stretches" + (f", neural data {lag} ms before the behaviour, shifted within each "
                          "stretch and never across a gap" if lag else "") + ")"
           if behavior else "")
        + ". PSTH R^2 needs trials of repeated conditions and does not apply to a continuous "
        "recording.",
        f"Scores are on the {_plural(len(blocks), names[split] + ' block')} of time, "
        f"{seen_text}; ± gives "
        f"the bootstrap standard error over their stretches ({e.get('n_bootstrap')} "
        f"resamplings, seed {e.get('seed')}). The baseline is NLB's spike smoothing (held-in "
        f"spikes smoothed with a {e.get('smoothing_sigma_ms')} ms Gaussian kernel within each "
        "stretch, a Poisson GLM per held-out unit fitted on the training blocks) on the same "
        "bins."]
    results = []
    for method in [m for m in METHOD_NAMES if m in set(rows["method"])]:
        scores = [(metric, _score(rows, method, metric, split)) for metric in METRICS]
        scores = [f"{METRIC_NAMES.get(metric, metric)} {value}" for metric, value in scores
                  if value]
        if scores:
            results.append(f"{METHOD_NAMES[method]}: {', '.join(scores)}")
    if results:
        parts.append("Results (" + names[split] + " blocks): " + "; ".join(results) + ".")
    if r.decoding is not None and len(r.decoding):
        dec = r.decoding[r.decoding["target"] == "all"] if "target" in r.decoding else r.decoding
        values = [f"{DECODER_NAMES.get(row['method'], row['method'])} {float(row['r2']):.3f}"
                  + (f" ± {float(row['r2_sem']):.3f}" if pd.notna(row.get("r2_sem")) else "")
                  for _, row in dec.iterrows()]
        parts.append("Behaviour was decoded bin by bin from the merged LFADS rates and factors "
                     "and, for comparison, from smoothed and binned spikes on the same bins; "
                     f"R^2 over all behaviour dimensions on the {names[split]} blocks: "
                     + "; ".join(values) + ".")
    return "**Evaluation.** " + " ".join(parts)


def _as_segments(text: str) -> str:
    """A paragraph about trials, said of a continuous recording's segments."""
    return re.sub(r"\btrial\b", "segment", re.sub(r"\btrials\b", "segments", text))


def _software(r: RunRecord) -> str:
    versions = [f"{name} {' / '.join(r.versions[key])}" for key, name in SOFTWARE.items()
                if r.versions.get(key)]
    return ("**Software.** The analysis ran as a Snakemake workflow, lfads-workflow, with "
            f"{_join(versions)} (as recorded in `results/{r.dataset}/provenance/`, which traces "
            "every result to the recording by checksum). lfads-workflow is cited through its "
            "`CITATION.cff`.")


def methods_markdown(record: RunRecord) -> str:
    """The methods section of one dataset as Markdown: a heading, paragraphs on data, model,
    training and selection, evaluation and software, and the references cited."""
    cited = ["lfads", "lfads2018"]
    if (record.search or {}).get("method") == "pbt":
        cited += ["pbt", "autolfads"]
    cited.append("nlb")
    paragraphs = [
        f"# Methods: {record.dataset}",
        "_Written by lfads-workflow from this run's settings, summaries, scores and provenance "
        "records; check and edit before use._",
        _data(record),
        *((_as_segments(_model(record)), _as_segments(_training(record))) if _continuous(record)
          else (_model(record), _training(record))),
        _evaluation(record),
        _software(record),
        "## References\n\n" + "\n".join(f"- {REFERENCES[key]}" for key in cited),
    ]
    return "\n\n".join(paragraphs) + "\n"


def write_methods(record: RunRecord, out_md: str | Path) -> Path:
    """Write :func:`methods_markdown` of ``record`` to ``out_md``, atomically."""
    with atomic_path(out_md) as tmp:
        tmp.write_text(methods_markdown(record))
    return Path(out_md)
