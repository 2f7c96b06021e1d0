"""The verdict rules on hand-built mapping records: direction, informative gate, convergence, corpora."""

import json

import numpy as np
import pytest

from ncajax.config import PRIMARY_ESTIMATOR, PRIMARY_METRIC
from ncajax.results import _verdict as verdict

S, T = 10, 6
MODELS = ("dae", "dae_deep", "dae_sf")


def _table(mean, spread=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return (mean + spread * rng.normal(size=(S, T))).tolist()


def _records(diag: dict, *, err=0.5, gain_err=0.7, converged=True, setting=PRIMARY_ESTIMATOR,
             method="nca", err_by_model=None):
    """Records of one setting for the three models: diag = {model: mean of the primary metric}."""
    recs = {}
    for i, m in enumerate(MODELS):
        e = (err_by_model or {}).get(m, err)
        recs[(m, setting, "pooled")] = {
            "method": method,
            "rel_l1_heldout": _table(e, seed=10 + i),
            "rel_l1_heldout_clipped": _table(e - 0.05, seed=20 + i),
            "converged": [converged] * S if method in ("nca", "student") else [None] * S,
            "metrics": {"diagonal_energy_ratio": _table(diag[m], seed=40 + i)},
            "functional": {"keep_diag": _table(diag[m], seed=30 + i)},
        }
        if method == "jacobian" and m == "dae_sf":  # only the mask_jacobian part may count
            recs[(m, setting, "pooled")]["part_metrics"] = {
                "mask": {"diagonal_energy_ratio": _table(1.0, spread=0.0)},
                "mask_jacobian": {"diagonal_energy_ratio": _table(diag[m], seed=60 + i)}}
        recs[(m, "per_bin_gain", "baseline")] = {"method": "per_bin_gain",
                                                 "rel_l1_heldout": _table(gain_err, seed=50 + i),
                                                 "rel_l1_heldout_clipped": _table(gain_err - 0.05, seed=50 + i)}
    return recs


def test_clear_dae_lead_holds():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3})
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])
    assert c["overall"]["verdict"] == "holds" and c["overall"]["reason"] is None
    v = c["settings"][PRIMARY_ESTIMATOR]
    assert v["counts"] and v["ordering"] == "dae_more_diagonal" and v["role"] == "primary"
    assert v["intervals"]["dae"]["mean"] == pytest.approx(0.3, abs=0.01)
    assert all(i["informative"] for i in v["informative"].values())


def test_clear_sf_lead_is_reversed_not_does_not_hold():
    c = verdict.conclusion(_records({"dae": 0.2, "dae_deep": 0.25, "dae_sf": 0.6}), [PRIMARY_ESTIMATOR])
    assert c["overall"]["verdict"] == "reversed"
    assert c["settings"][PRIMARY_ESTIMATOR]["ordering"] == "sf_more_diagonal"


def test_overlapping_intervals_are_undetermined():
    recs = _records({"dae": 0.4, "dae_deep": 0.4, "dae_sf": 0.4})
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])
    assert c["overall"]["verdict"] == "undetermined"
    assert "includes 0" in c["overall"]["reason"]
    v = c["settings"][PRIMARY_ESTIMATOR]
    for dae in verdict.DAE_MODELS:
        assert v["intervals"][dae]["lo"] <= 0 <= v["intervals"][dae]["hi"] and v["signs"][dae] == 0


def test_daes_on_opposite_sides_are_mixed_and_do_not_count():
    c = verdict.conclusion(_records({"dae": 0.7, "dae_deep": 0.1, "dae_sf": 0.4}), [PRIMARY_ESTIMATOR])
    v = c["settings"][PRIMARY_ESTIMATOR]
    assert v["signs"] == {"dae": 1, "dae_deep": -1}
    assert v["ordering"] == "mixed" and not v["counts"] and c["overall"]["verdict"] == "undetermined"
    assert c["overall"]["reason"] == "the DAEs disagree in direction"


def test_not_below_the_per_bin_gain_is_uninformative():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}, err_by_model={"dae_sf": 0.72})
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])
    v = c["settings"][PRIMARY_ESTIMATOR]
    assert not v["informative"]["dae_sf"]["informative"] and v["informative"]["dae"]["informative"]
    assert v["ordering"] == "dae_more_diagonal" and not v["counts"]
    assert c["overall"]["verdict"] == "undetermined"
    assert c["overall"]["reason"] == (
        "uninformative on held-out songs for dae_sf (held-out error not clearly below the best per-bin gain's)")


def test_a_missing_per_bin_gain_baseline_makes_a_fit_uninformative():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3})
    del recs[("dae_deep", "per_bin_gain", "baseline")]
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])
    info = c["settings"][PRIMARY_ESTIMATOR]["informative"]["dae_deep"]
    assert not info["informative"] and info["reason"] == "no per-bin-gain baseline on the same songs"
    assert c["overall"]["verdict"] == "undetermined"


def test_worse_than_silence_is_uninformative_even_below_a_bad_gain():
    info = verdict.informative({"method": "nca", "rel_l1_heldout": _table(1.2)},
                               {"rel_l1_heldout": _table(1.5)})
    assert info["vs_gain"]["hi"] < 0 and info["vs_zero"]["lo"] > 0  # below the gain, above silence
    assert not info["informative"] and info["reason"] == "held-out error not clearly below the zero predictor's"


def test_fits_that_did_not_converge_do_not_count():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}, converged=False)
    v = verdict.setting_verdict(recs, PRIMARY_ESTIMATOR)
    assert not v["counts"] and "converged" in v["reason"] and v["converged"]["dae"] == (0, S)


@pytest.mark.parametrize("n_converged, counts", [(0, False), (S // 2 - 1, False), (S // 2, True), (S, True)])
def test_at_least_half_the_fits_of_every_model_must_converge(n_converged, counts):
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3})
    recs[("dae", PRIMARY_ESTIMATOR, "pooled")]["converged"] = [True] * n_converged + [False] * (S - n_converged)
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])
    v = c["settings"][PRIMARY_ESTIMATOR]
    assert v["converged"]["dae"] == (n_converged, S) and v["ordering"] == "dae_more_diagonal"
    assert v["counts"] is counts
    assert c["overall"]["verdict"] == ("holds" if counts else "undetermined")
    if not counts:
        assert c["overall"]["reason"] == "fewer than half the fits converged for dae"


def test_the_mean_jacobian_is_not_gated_by_fit_error():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}, err=0.9, gain_err=0.5,
                    setting="jacobian", method="jacobian")
    v = verdict.setting_verdict(recs, "jacobian", metric="diagonal_energy_ratio")
    assert not v["informative"]["dae"]["informative"]  # reported...
    assert v["counts"] and v["ordering"] == "dae_more_diagonal"  # ...but not gating
    assert v["by_construction"] and "diag(m(x))" in v["by_construction"]


def test_the_diag_m_part_of_dae_sfs_jacobian_never_counts():
    # dae_sf's full Jacobian table says "dae_sf far more diagonal", its diag(m) part is 1 by construction;
    # only the mask_jacobian part (here 0.3, below the DAEs) may decide the direction
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}, setting="jacobian", method="jacobian")
    recs[("dae_sf", "jacobian", "pooled")]["metrics"]["diagonal_energy_ratio"] = _table(0.95)
    v = verdict.setting_verdict(recs, "jacobian", metric="diagonal_energy_ratio")
    assert v["ordering"] == "dae_more_diagonal"
    assert v["intervals"]["dae"]["mean"] == pytest.approx(0.3, abs=0.02)
    # the functional primary metric has no mask_jacobian table: no direction from the Jacobian
    v = verdict.setting_verdict(recs, "jacobian")
    assert v["ordering"] == "undetermined" and not v["counts"]


def test_missing_model_and_missing_primary():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3})
    del recs[("dae_deep", PRIMARY_ESTIMATOR, "pooled")]
    v = verdict.setting_verdict(recs, PRIMARY_ESTIMATOR)
    assert not v["counts"] and "dae_deep" in v["reason"]
    c = verdict.conclusion(_records({"dae": 0.6, "dae_deep": 0.5, "dae_sf": 0.3}, setting="lstsq",
                                    method="lstsq"), ["lstsq"])
    assert c["overall"]["verdict"] == "undetermined" and "not run" in c["overall"]["reason"]
    assert c["overall"]["secondary_counting"] == {"lstsq": "dae_more_diagonal"}


def test_the_primary_decides_and_a_secondary_counts_only_by_its_own_rules():
    """A reversed primary with secondaries that say "holds": the verdict is the primary's; an uninformative
    least-squares fit and the mean Jacobian on the functional primary metric (dae_sf's has no mask_jacobian
    table of it) are not counted as secondary opinions."""
    recs = _records({"dae": 0.2, "dae_deep": 0.25, "dae_sf": 0.6})
    recs.update(_records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}, err=0.9, setting="lstsq", method="lstsq"))
    recs.update(_records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}, err=0.9, setting="jacobian",
                         method="jacobian"))
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR, "lstsq", "jacobian"])
    assert c["overall"]["verdict"] == "reversed" and c["overall"]["secondary_counting"] == {}
    lstsq, jac = c["settings"]["lstsq"], c["settings"]["jacobian"]
    assert lstsq["ordering"] == "dae_more_diagonal" and not lstsq["counts"]
    assert lstsq["reason"].startswith("uninformative on held-out songs")
    assert not jac["counts"] and "mask_jacobian" in jac["reason"]
    assert c["primary_secondary_metric"]["metric"] == "diagonal_energy_ratio"


def test_non_finite_metric_is_undetermined_not_an_error():
    recs = _records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3})
    assert PRIMARY_METRIC == "diagonal_keep"
    recs[("dae", PRIMARY_ESTIMATOR, "pooled")]["functional"]["keep_diag"][0][0] = float("nan")
    v = verdict.setting_verdict(recs, PRIMARY_ESTIMATOR)
    assert "dae" not in v["intervals"] and v["ordering"] == "undetermined" and not v["counts"]


def test_across_corpora_counts_each_direction():
    holds = verdict.conclusion(_records({"dae": 0.6, "dae_deep": 0.55, "dae_sf": 0.3}), [PRIMARY_ESTIMATOR])
    rev = verdict.conclusion(_records({"dae": 0.2, "dae_deep": 0.25, "dae_sf": 0.6}), [PRIMARY_ESTIMATOR])
    und = verdict.conclusion(_records({"dae": 0.4, "dae_deep": 0.4, "dae_sf": 0.4}), [PRIMARY_ESTIMATOR])
    s = verdict.across_corpora({"corpus-0": holds, "corpus-1": rev, "corpus-2": und, "corpus-3": holds})
    assert s["n_corpora"] == 4
    assert s["verdict_counts"] == {"holds": 2, "reversed": 1, "per_bin_filter_suffices": 0,
                                   "no_linear_summary": 0, "undetermined": 1}
    row = s["settings"][PRIMARY_ESTIMATOR]
    assert row["counted"] == {"dae_more_diagonal": 2, "sf_more_diagonal": 1} and row["not_counted"] == 1
    assert row["orderings"]["corpus-2"] == "undetermined"
    with pytest.raises(ValueError, match="no corpus"):
        verdict.across_corpora({})


def _branch_records(err, gain_err, keep, zero_err=1.0):
    """One model's pooled record and baselines with clipped tables of the given means."""
    return {("dae", "lstsq", "pooled"): {"method": "lstsq", "rel_l1_heldout_clipped": _table(err),
                                         "functional": {"keep_diag": _table(keep, seed=1)}},
            ("dae", "per_bin_gain", "baseline"): {"rel_l1_heldout_clipped": _table(gain_err, seed=2)},
            ("dae", "zero", "baseline"): {"rel_l1_heldout_clipped": _table(zero_err, spread=0.0)}}


@pytest.mark.parametrize("err, gain_err, keep, want", [
    (0.3, 0.6, 0.5, "couplings"),                  # C clearly beats the gain and silence
    (0.3, 0.3, 0.99, "per_bin_filter_suffices"),   # no better than the gain, diag(C) keeps ~all
    (0.3, 0.3, 0.5, "undetermined"),               # no better than the gain, but diag(C) keeps half
    (1.0, 1.0, 0.5, "no_linear_summary"),          # nothing beats silence
    (1.0, 0.5, 0.5, "undetermined"),               # the gain beats silence, C does not
])
def test_model_branches(err, gain_err, keep, want):
    assert verdict.model_branch(_branch_records(err, gain_err, keep), "dae", "lstsq")["branch"] == want


def test_branch_verdict_when_the_primary_does_not_count():
    recs = _records({"dae": 0.99, "dae_deep": 0.99, "dae_sf": 0.99}, err=0.4, gain_err=0.45)
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])  # clipped errors 0.35 vs 0.40: informative
    assert c["settings"][PRIMARY_ESTIMATOR]["branches"] == {m: "couplings" for m in MODELS}
    recs = _records({"dae": 0.99, "dae_deep": 0.99, "dae_sf": 0.99}, err=0.5, gain_err=0.5)
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])  # C == the gain, diag(C) keeps 99 %
    assert c["overall"]["verdict"] == "per_bin_filter_suffices"
    assert c["overall"]["models"] == list(MODELS)
    recs = _records({"dae": 0.99, "dae_deep": 0.99, "dae_sf": 0.99}, err=1.05, gain_err=1.05,
                    err_by_model={"dae": 0.5})
    c = verdict.conclusion(recs, [PRIMARY_ESTIMATOR])  # dae_deep, dae_sf: nothing beats silence
    assert c["overall"]["verdict"] == "no_linear_summary"
    assert c["overall"]["models"] == ["dae_deep", "dae_sf"]


# ---------------------------------------------------------------------------------------------- convergence control


def _control_records(levels: dict, *, fit_err: dict | None = None) -> dict:
    """Control records: levels[(setting, steps)] = {model: (keep level, weighted ratio level)}."""
    recs = {}
    for (setting, steps), per_model in levels.items():
        for i, (m, (keep, ratio)) in enumerate(per_model.items()):
            recs[(m, f"{setting}@{steps}", "control")] = {
                "method": "nca", "control": {"setting": setting, "steps": steps, "fit_steps": 100,
                                             "learning_rate": 1e-4 if setting == "nca_authors" else 1e-3},
                "rel_l1_fit": [(fit_err or {}).get((setting, steps), 0.5) + 0.01 * i] * S,
                "rel_l1_heldout": _table(0.6, seed=steps + i), "rel_l1_heldout_clipped": _table(0.55, seed=steps + i),
                "functional": {"keep_diag": _table(keep, seed=70 + steps + i)},
                "metrics": {"weighted_diagonal_energy_ratio": _table(ratio, seed=90 + steps + i)},
            }
    return recs


def _authors_pooled(keep: dict, ratio: dict) -> dict:
    return {(m, "nca_authors", "pooled"): {
        "method": "nca", "settings": {"name": "nca_authors", "steps": 60},
        "functional": {"keep_diag": _table(keep[m], seed=110 + i)},
        "metrics": {"weighted_diagonal_energy_ratio": _table(ratio[m], seed=120 + i)}} for i, m in enumerate(MODELS)}


DAE_AHEAD = {"dae": 0.7, "dae_deep": 0.65, "dae_sf": 0.3}
SF_AHEAD = {"dae": 0.3, "dae_deep": 0.35, "dae_sf": 0.7}
TIED = {"dae": 0.5, "dae_deep": 0.5, "dae_sf": 0.5}


def test_convergence_control_intervals_fit_errors_and_the_frozen_p_flag():
    both = lambda keep, ratio: {m: (keep[m], ratio[m]) for m in MODELS}  # noqa: E731
    levels = {("nca_authors", 0): both(DAE_AHEAD, DAE_AHEAD), ("nca_authors", 60): both(DAE_AHEAD, DAE_AHEAD),
              ("nca_converged", 0): both(DAE_AHEAD, DAE_AHEAD), ("nca_converged", 60): both(SF_AHEAD, TIED),
              ("nca_converged", 300): both(SF_AHEAD, SF_AHEAD)}
    fit_err = {("nca_authors", 0): 0.9, ("nca_authors", 60): 0.7, ("nca_converged", 0): 0.9,
               ("nca_converged", 60): 0.4, ("nca_converged", 300): 0.2}
    recs = {**_control_records(levels, fit_err=fit_err), **_authors_pooled(DAE_AHEAD, DAE_AHEAD)}
    out = verdict.convergence_control(recs)
    assert out["metrics"] == [PRIMARY_METRIC, "weighted_diagonal_energy_ratio"]
    assert [(r["setting"], r["steps"]) for r in out["rows"]] == [
        ("nca_authors", 0), ("nca_authors", 60), ("nca_converged", 0), ("nca_converged", 60), ("nca_converged", 300)]
    rows = {(r["setting"], r["steps"]): r for r in out["rows"]}
    last = rows[("nca_converged", 300)]
    assert last["fit_error"] == pytest.approx({"dae": 0.2, "dae_deep": 0.21, "dae_sf": 0.22})
    assert last["heldout_error"]["dae"] == pytest.approx(np.mean(_table(0.55, seed=300)))
    assert last["learning_rate"] == 1e-3 and rows[("nca_authors", 0)]["learning_rate"] == 1e-4
    assert last["directions"][PRIMARY_METRIC]["ordering"] == "sf_more_diagonal"
    # the intervals are `direction`'s on the control records' tables
    want = verdict.direction({m: np.asarray(recs[(m, "nca_converged@60", "control")]["functional"]["keep_diag"])
                              for m in MODELS})
    assert rows[("nca_converged", 60)]["directions"][PRIMARY_METRIC] == want
    assert rows[("nca_converged", 60)]["directions"]["weighted_diagonal_energy_ratio"]["ordering"] == "undetermined"
    assert rows[("nca_authors", 0)]["directions"][PRIMARY_METRIC]["intervals"]["dae"]["mean"] == pytest.approx(
        0.4, abs=0.02)
    frozen = out["frozen_p"]
    assert frozen["authors"] == {PRIMARY_METRIC: "dae_more_diagonal",
                                 "weighted_diagonal_energy_ratio": "dae_more_diagonal"}
    assert frozen["authors_source"] == "pooled"
    assert frozen["step0"] == frozen["authors"] and out["frozen_p_reproduces_authors"] is True
    assert frozen["reproduces"] == {PRIMARY_METRIC: True, "weighted_diagonal_energy_ratio": True}
    # in the conclusion, and JSON-ready
    c = verdict.conclusion({**recs, **_records(DAE_AHEAD)}, [PRIMARY_ESTIMATOR])
    assert c["convergence_control"]["frozen_p_reproduces_authors"] is True
    assert verdict.conclusion(_records(DAE_AHEAD), [PRIMARY_ESTIMATOR])["convergence_control"] is None
    json.dumps(c)

    # frozen P gives the other direction on the authors' metric: not reproduced
    levels[("nca_authors", 0)] = both(DAE_AHEAD, SF_AHEAD)
    out = verdict.convergence_control({**_control_records(levels), **_authors_pooled(DAE_AHEAD, DAE_AHEAD)})
    assert out["frozen_p"]["reproduces"] == {PRIMARY_METRIC: True, "weighted_diagonal_energy_ratio": False}
    assert out["frozen_p_reproduces_authors"] is False
    # the authors' direction counts on their metric only: the flag rests on that metric
    levels[("nca_authors", 0)] = both(TIED, DAE_AHEAD)
    out = verdict.convergence_control({**_control_records(levels), **_authors_pooled(TIED, DAE_AHEAD)})
    assert out["frozen_p"]["reproduces"] == {PRIMARY_METRIC: None, "weighted_diagonal_energy_ratio": True}
    assert out["frozen_p_reproduces_authors"] is True
    # no counting direction of the authors at all: nothing to reproduce
    out = verdict.convergence_control({**_control_records(levels), **_authors_pooled(TIED, TIED)})
    assert out["frozen_p_reproduces_authors"] is False
    # without pooled authors' fits, their control snapshot at their step count stands in
    levels[("nca_authors", 0)] = both(DAE_AHEAD, DAE_AHEAD)
    recs = {**_control_records(levels), **_authors_pooled(DAE_AHEAD, DAE_AHEAD)}
    recs.pop(("dae_sf", "nca_authors", "pooled"))
    recs[("dae", "nca_authors", "pooled")]["settings"]["steps"] = 60
    out = verdict.convergence_control(recs)
    assert out["frozen_p"]["authors_source"] == "control" and out["frozen_p_reproduces_authors"] is True
