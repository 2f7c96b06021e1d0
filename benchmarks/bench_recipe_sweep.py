"""Training-recipe sweep (issue 17, 2026-12-07): what keeps each separator's output units alive.

Trains one model at a time (3 seeds vmapped, `ncajax.training.train_model`, the default TrainConfig unless a
variant changes it) on the embedded corpus at a preset and corpus seed, then measures on the held-out test
songs, per seed: the dead share of output units (for dae_sf its mask units; `ncajax.separation`), the
homogeneity error at alpha = 1/4 and 4, the test magnitude-SDR gain over the mixture, the epochs run.

Variants (VARIANTS): the mask's / DAE's output-layer bias start (`out_bias_*`, built as small subclasses of
the built-in modules), PyTorch's default uniform bias init (`torch_bias`), learning rate (`lr*`), a longer
patience and epoch budget (`long*`), the loss (`mse`, `mse_ob1`), and optimiser schedules patched into
`ncajax.training.optimizer` for the sweep only (`warmup`: linear warm-up over 1,000 steps; `clip`: global
norm 1). The `base` variant is the recipe "study_zero_bias" (L1, every bias at zero).

    python benchmarks/bench_recipe_sweep.py PRESET MODELS VARIANTS [CORPUS_SEED]
    python benchmarks/bench_recipe_sweep.py mid dae_sf base,out_bias_1,torch_bias,lr3e-4 0

Prints one `SWEEP {json}` line per (variant, model); the lines of 2026-12-07 (Intel Xeon, 2 cores, run at
nice 19 beside other jobs, so train_s is not a timing) are in results-recipe-sweep-cpu-2026-12-07.jsonl.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ncajax import models, nca, separation, study, training
from ncajax.config import CorpusConfig, ModelConfig, TrainConfig, preset
from ncajax.training import load_trained, train_model


def torch_uniform_bias(key, shape, dtype=jnp.float32):
    # nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = width here (hidden = N)
    bound = 1.0 / np.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)

class DAEOut(models.DAE):
    out_bias: float = 0.0
    def setup(self):
        kinit = nn.initializers.xavier_normal()
        self.encoders = [nn.Dense(self.hidden, kernel_init=kinit, bias_init=self.bias_init, name=f"encoder_{i}")
                         for i in range(self.n_encoder)]
        self.decoder = nn.Dense(self.n_bins, kernel_init=kinit,
                                bias_init=nn.initializers.constant(self.out_bias) if self.out_bias else self.bias_init,
                                name="decoder")

class SFOut(models.SkipFilterDAE):
    out_bias: float = 0.0
    def setup(self):
        self.masker = DAEOut(self.n_bins, self.hidden, self.n_encoder, self.bias_init, self.out_bias, name="masker")

def build(name, n, bias, out_bias):
    bi = torch_uniform_bias if bias == "torch" else nn.initializers.zeros
    if name == "dae_sf":
        return SFOut(n_bins=n, hidden=n, n_encoder=1, bias_init=bi, out_bias=out_bias)
    return DAEOut(n_bins=n, hidden=n, n_encoder={"dae": 1, "dae_deep": 3}[name], bias_init=bi, out_bias=out_bias)

_orig_opt = training.optimizer
OPT = {"mode": None}
def _opt(cfg):
    m = OPT["mode"]
    if m == "warmup":
        sched = optax.linear_schedule(cfg.learning_rate * 0.01, cfg.learning_rate, 1000)
        return optax.adam(sched)
    if m == "clip":
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.learning_rate))
    if m == "warmup_clip":
        sched = optax.linear_schedule(cfg.learning_rate * 0.01, cfg.learning_rate, 1000)
        return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
    return _orig_opt(cfg)
training.optimizer = _opt

VARIANTS = {
    "mse": dict(loss="mse"),
    "mse_ob1": dict(loss="mse", out_bias=1.0),
    "lr1e-4": dict(lr=1e-4),
    "warmup": dict(opt="warmup"),
    "clip": dict(opt="clip"),
    "warmup_clip": dict(opt="warmup_clip"),
    "base": dict(),
    "torch_bias": dict(bias="torch"),
    "out_bias_1": dict(out_bias=1.0),
    "out_bias_0.1": dict(out_bias=0.1),
    "lr3e-4": dict(lr=3e-4),
    "long": dict(patience=15, epochs=80),
    "long_out1": dict(patience=15, epochs=80, out_bias=1.0),
    "long_torch": dict(patience=15, epochs=80, bias="torch"),
    "lr3e-4_long": dict(lr=3e-4, patience=15, epochs=80),
    "lr3e-4_e60": dict(lr=3e-4, epochs=60),
}

def main():
    preset_name, model_names, variants = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
    stft = preset(preset_name)
    data = study.prepare_data(preset_name=preset_name, progress=False,
                                 corpus_cfg=CorpusConfig(seed=int(sys.argv[4]) if len(sys.argv) > 4 else 0, sample_rate=stft.sample_rate))
    x_test = np.asarray(data.test.mixture, np.float32)
    freqs = nca.bin_frequencies(stft.n_bins, sample_rate=stft.sample_rate, n_fft=stft.n_fft)
    root = Path(tempfile.mkdtemp(prefix="sweep-"))
    for v in variants:
        o = VARIANTS[v]
        for name in model_names:
            OPT["mode"] = o.get("opt")
            cfg = TrainConfig(n_seeds=3, loss=o.get("loss", "l1"), mask_bias=0.0, learning_rate=o.get("lr", 1e-3), patience=o.get("patience", 5),
                              max_epochs=o.get("epochs", 30))
            model = build(name, stft.n_bins, o.get("bias", "zeros"), o.get("out_bias", 0.0))
            t0 = time.perf_counter()
            res = train_model(ModelConfig(name=name, n_bins=stft.n_bins), cfg, stft, data.train, data.valid,
                              data.test, root / v / name, progress=False, model=model,
                              data=data.description)
            dt = time.perf_counter() - t0
            tr = load_trained(root / v / name, model=model)
            facts = [separation.unit_facts(model, tr.seed_params(s), x_test, freqs) for s in range(3)]
            rec = dict(corpus=sys.argv[4] if len(sys.argv) > 4 else 0, preset=preset_name, variant=v, model=name, dead=[round(f["dead_share"], 3) for f in facts],
                       hom=[(round(f["homogeneity"]["0.25"], 3), round(f["homogeneity"]["4"], 3)) for f in facts],
                       gain=np.round(res.result["test_improvement_db"], 2).tolist(),
                       epoch=len(open(root / v / name / "metrics.jsonl").readlines()), train_s=round(dt, 1))
            print("SWEEP " + json.dumps(rec), flush=True)

main()
