"""Worked example: map a separator that is not in the paper, and a bare JAX function, with ncajax.

Run:
    python experiments/map_your_model.py                       # embedded corpus, ~1.5 min on 2 CPU cores
    python experiments/map_your_model.py --epochs 30 --fit-steps 3000 --out runs/gelu
    python experiments/map_your_model.py --settings one-per-method --no-figures   # quickest

What it does:
1. defines `GeluMaskNet`, a mask network the paper does not study (Dense N->H, GELU, Dense H->N, sigmoid
   mask, output x * mask), and trains it (2 seeds in one vmapped program) on the embedded synthetic corpus
   with the library's own training code (`ncajax.training.train_model(..., model=GeluMaskNet(...))`);
2. maps it with every method through the main job's mapping stage (`ncajax.nca.run_stage`): the
   authors' NCA, a converged NCA with Xavier and with uniform init, the student, least squares and the
   mean Jacobian. NCA runs because the module's params are a stack of flax Dense layers
   (`ncajax.models.dense_layers`), but its gates relu((W + b 1^T) P^T) model ReLU units: for GELU and a
   sigmoid mask the NCA product is an approximation of the network's structure, not an exact
   re-parametrisation (the student, lstsq and Jacobian fits make no such assumption);
3. maps a bare callable with no params, `spectral_subtraction(x) = max(x - 0.5 mean_bins(x), 0)`, with
   the student, lstsq and Jacobian methods, and shows that "nca" refuses it with a clear error (a callable
   exposes no layer weights): the message is printed and stored in summary.json. The callable gets its
   own mapping stage because `run_stage` fits every setting to every separator it is given.

Yields under --out (default runs/map_your_model), laid out like the main job's run directory:
    train/gelu_mask/         config, metrics.jsonl, Orbax checkpoints, result.json (test magnitude SDR)
    mappings/                the mapping stage of gelu_mask (result.json, matrices/, frames.npz, ...)
    callable/mappings/       the same stage for the bare callable (student, lstsq, jacobian)
    figures/, callable/figures/   the main job's figures (when `ncajax.plots` is available), except
                             the spectrogram figure, whose excerpt the evaluation stage saves
    summary.json             relative L1 error (fitted and held-out frames) and local spread per model and
                             setting, the training result, and the methods that are not applicable
Re-running reuses every finished stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ncajax import nca, runs, study, training
from ncajax.config import (
    CorpusConfig,
    MappingConfig,
    ModelConfig,
    TrainConfig,
    check_fit_frames,
    default_settings,
    preset,
)

MODEL_NAME = "gelu_mask"
CALLABLE_NAME = "spectral_subtraction"


class GeluMaskNet(nn.Module):
    """y = x * sigmoid(Dense_{H->N}(gelu(Dense_{N->H}(x)))): a GELU mask network with a sigmoid mask.

    The layers are named `encoder_0` and `decoder` so that `ncajax.models.dense_layers` lists them in
    forward order (which makes NCA applicable, as an approximation: its gates assume ReLU units).
    """

    n_bins: int
    hidden: int

    def setup(self):
        kinit = nn.initializers.xavier_normal()
        self.encoder_0 = nn.Dense(self.hidden, kernel_init=kinit)
        self.decoder = nn.Dense(self.n_bins, kernel_init=kinit)

    def mask(self, x: Float[Array, "... nb_bins"]) -> Float[Array, "... nb_bins"]:
        return nn.sigmoid(self.decoder(nn.gelu(self.encoder_0(x))))

    def __call__(self, x: Float[Array, "... nb_bins"]) -> Float[Array, "... nb_bins"]:
        return x * self.mask(x)


def spectral_subtraction(x: Float[Array, "nb_frames nb_bins"]) -> Float[Array, "nb_frames nb_bins"]:
    """A fixed separator with no params: subtract half of each frame's mean magnitude, clip at zero."""
    return jnp.maximum(x - 0.5 * x.mean(-1, keepdims=True), 0.0)


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/map_your_model", help="run directory of the example")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs of GeluMaskNet")
    ap.add_argument("--seeds", type=int, default=2, help="seeds of GeluMaskNet (trained in one program)")
    ap.add_argument("--hidden", type=int, default=None, help="hidden width H (default N)")
    ap.add_argument("--fit-steps", type=int, default=1000, help="steps of the converged NCA/student fits")
    ap.add_argument("--fit-lr", type=float, default=1e-3, help="learning rate of the converged fits")
    ap.add_argument("--settings", default="main", choices=["main", "one-per-method"],
                    help="main: the main job's fit settings; one-per-method: the converged NCA and "
                         "student, lstsq and jacobian (faster)")
    ap.add_argument("--fit-frames", type=int, default=512, help="training-song frames each mapping is fitted on")
    ap.add_argument("--corpus-tracks", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                    help="size of the embedded corpus (default 24 6)")
    ap.add_argument("--corpus-seconds", type=float, default=None, help="duration of each corpus track")
    ap.add_argument("--no-figures", action="store_true", help="skip the figures")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    for name in ("epochs", "seeds", "fit_steps", "fit_frames"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    return args


def mapping_configs(args) -> tuple[MappingConfig, MappingConfig]:
    """The main job's settings for the module; the same without NCA for the bare callable."""
    frames = dict(n_fit_frames=args.fit_frames, heldout_frames_per_song=min(256, args.fit_frames),
                  jacobian_frames=min(256, args.fit_frames), linearity_frames=min(256, args.fit_frames))
    settings = default_settings(args.fit_steps, args.fit_lr)
    if args.settings == "one-per-method":
        keep = ("nca_converged", "student_converged", "lstsq", "jacobian")
        settings = tuple(s for s in settings if s.name in keep)
    module_cfg = MappingConfig(settings=settings, **frames)
    callable_cfg = MappingConfig(settings=tuple(s for s in settings if s.method != "nca"), **frames)
    return module_cfg, callable_cfg


def nca_refusal(x: np.ndarray) -> str:
    """Try NCA on the bare callable; return the error it raises (it cannot list layer weights)."""
    try:
        nca.fit_mapping(spectral_subtraction, None, x, nca.NCA(steps=1))
    except ValueError as err:
        return str(err)
    raise RuntimeError("nca.fit_mapping ran NCA on a bare callable; it should have refused")


def summarise(stage: dict) -> dict[str, dict[str, dict]]:
    """{model: {setting: mean relative L1 error on fitted / held-out frames, local spread}} of a mapping stage."""

    def mean(values):
        vals = [v for v in values if v is not None]
        return float(np.mean(vals)) if vals else None

    out: dict[str, dict[str, dict]] = {}
    for r in stage["records"]:
        if r["kind"] != "pooled":
            continue
        out.setdefault(r["model"], {})[r["setting"]] = {
            "method": r["method"],
            "rel_l1_fit": mean(r["rel_l1_fit"]),
            "rel_l1_heldout": mean(np.ravel(r["rel_l1_heldout"])),
            "local_spread": mean(r["local_spread"]),
            "converged": r["converged"],
        }
    return out


def main(argv=None) -> dict:
    """Train, map and plot; returns the summary also written to `<out>/summary.json`."""
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    stft = preset("fast")
    check_fit_frames(args.fit_frames, stft.n_bins, option="--fit-frames", preset_name="fast")  # before training

    kw = {"sample_rate": stft.sample_rate}
    if args.corpus_tracks:
        kw.update(n_train=args.corpus_tracks[0], n_test=args.corpus_tracks[1])
    if args.corpus_seconds:
        kw["duration"] = args.corpus_seconds
    data = study.prepare_data(corpus_cfg=CorpusConfig(**kw), progress=progress)
    n_bins = data.stft.n_bins
    hidden = args.hidden or n_bins

    # 1. Train the custom module with the library's training loop (checkpoints, early stopping, resume).
    model = GeluMaskNet(n_bins=n_bins, hidden=hidden)
    trained = training.train_model(
        ModelConfig(name=MODEL_NAME, n_bins=n_bins, hidden=hidden),
        TrainConfig(max_epochs=args.epochs, n_seeds=args.seeds),
        data.stft, data.train, data.valid, data.test, out / "train" / MODEL_NAME,
        data={k: v for k, v in data.description.items() if k != "root"},
        progress=progress, model=model,
    )

    # 2. Map it with every method, through the main job's mapping stage.
    module_cfg, callable_cfg = mapping_configs(args)
    provenance = {MODEL_NAME: runs.read_json(out / "train" / MODEL_NAME / "config.json")}
    module_stage = nca.run_stage(
        {MODEL_NAME: nca.Separator(model, trained.params, args.seeds, relu_stack=False)},
        data.train, data.test, data.stft, out / "mappings", module_cfg, provenance=provenance, progress=progress,
    )

    # 3. A bare callable: every method but NCA, which needs layer weights.
    refusal = nca_refusal(nca.select_frames(data.train, data.test, callable_cfg)["fit"])
    print(f"nca on the bare callable {CALLABLE_NAME!r} is not applicable:\n  {refusal}")
    callable_stage = nca.run_stage(
        {CALLABLE_NAME: nca.Separator(spectral_subtraction, None, 1)},
        data.train, data.test, data.stft, out / "callable" / "mappings", callable_cfg,
        provenance={CALLABLE_NAME: {"callable": f"experiments/map_your_model.py:{CALLABLE_NAME}"}}, progress=progress,
    )

    summary = {
        "models": {**summarise(module_stage), **summarise(callable_stage)},
        "not_applicable": {CALLABLE_NAME: {"nca": refusal}},
        "train": {k: trained.result.get(k) for k in
                  ("epochs", "test_mag_sdr_db", "test_mixture_mag_sdr_db", "test_improvement_db")},
        "stages": {MODEL_NAME: str(out / "mappings"), CALLABLE_NAME: str(out / "callable" / "mappings")},
    }
    runs.write_json(out / "summary.json", summary)
    _print_table(summary)

    # 4. The main job's figures, from the same run layout.
    if args.no_figures:
        pass
    else:
        plots = _plots()
        # No evaluation stage here, so no spectrogram excerpt: that figure is left out.
        plots.make_all(out, out / "figures")
        plots.make_all(out / "callable", out / "callable" / "figures")
        print(f"figures: {out / 'figures'}, {out / 'callable' / 'figures'}")
    print(f"summary: {out / 'summary.json'}")
    return summary


def _plots():
    """ncajax.plots; a failed import is an error (a broken install must not silently skip figures)."""
    try:
        from ncajax import plots
    except ImportError as err:
        raise ImportError(
            f"cannot import ncajax.plots ({err}); fix the installation (pip install -e .) or pass "
            "--no-figures to skip the figures"
        ) from err
    if not hasattr(plots, "make_all"):
        raise ImportError("ncajax.plots has no make_all(); the installed ncajax is out of date")
    return plots


def _print_table(summary: dict) -> None:
    print(f"{'model':22s} {'setting':18s} {'err. fit':>9s} {'err. held':>9s} {'spread':>7s}")
    for model_name, settings in summary["models"].items():
        for setting, row in settings.items():
            spread = "" if row["local_spread"] is None else f"{row['local_spread']:7.3f}"
            print(f"{model_name:22s} {setting:18s} {row['rel_l1_fit']:9.3f} "
                  f"{row['rel_l1_heldout']:9.3f} {spread:>7s}")
    print("(rel_l1_error: relative L1 error of x C^T against the model's output; lower is better)")


if __name__ == "__main__":
    from ncajax import cli

    cli.exit(main)
