"""VA calibration against vacalibration 2.1's own figures (the spec's reference_2.1.json).

Pre-processing exactly (causes left out, λ, the path-corrected prior, the uncalibrated CSMF);
posterior means within 0.01 and interval ends within max(0.02, sd/4) of the package's, with
the tolerance widened by √(10,000 / draws) when fewer draws are taken (the spec's rule). The
data and figures are read from CONVEYOR_VACALIBRATION_DATA and the reference beside it; the
tests skip, saying so, when they are absent.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.packs.calibration import data as data_files
from conveyor.packs.calibration import model
from conveyor.packs.calibration.jobtype import CalibrationInput, cache_key
from conveyor.packs.calibration.vadata import BadVAData, to_counts

DATA = os.environ.get(data_files.SETTING, "")
REFERENCE = Path(DATA).parent / "reference_2.1.json" if DATA else None
pytestmark = pytest.mark.skipif(
    not (REFERENCE and REFERENCE.is_file()),
    reason=f"VA calibration data and reference figures not found ({data_files.SETTING} unset or incomplete)",
)
NEONATE_EXAMPLE = [1, 148, 363, 327, 62, 289]


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    assert REFERENCE is not None
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def files() -> data_files.CalibrationData:
    return data_files.load()


def prepared(files: data_files.CalibrationData, counts: dict[str, list[int]], age: str, mode: Any) -> dict[str, Any]:
    request = model.Request({k: np.array(v, float) for k, v in counts.items()}, age, "Mozambique", mode)
    return model.prepare_all(request, files)


def test_preprocessing_reproduces_the_package_exactly(ref: dict[str, Any], files: data_files.CalibrationData) -> None:
    r = ref["neonate_insilicova_mozambique_prior_comsamoz_public_broad"]
    p = prepared(files, {"insilicova": NEONATE_EXAMPLE}, "neonate", "prior")["insilicova"]
    assert p.p_uncalib == pytest.approx(r["p_uncalib"], abs=1e-12)
    assert p.left_out.tolist() == r["donotcalib_tomodel"]
    assert p.lambda_calibpath == pytest.approx(r["lambda_calibpath"], abs=1e-12)
    assert np.abs(p.matrix - np.array(r["Mmat_tomodel"])).max() < 1e-12

    fixed = prepared(files, {"insilicova": NEONATE_EXAMPLE}, "neonate", "fixed")["insilicova"]
    assert fixed.lambda_calibpath == pytest.approx(ref["neonate_insilicova_moz_fixed"]["lambda_calibpath"], abs=1e-12)
    assert fixed.left_out.tolist() == ref["neonate_insilicova_moz_fixed"]["donotcalib_tomodel"][0]

    child = ref["child_insilicova_moz_prior"]
    c = prepared(files, {"insilicova": ref["child_broad_counts"]}, "child", "prior")["insilicova"]
    assert c.lambda_calibpath == pytest.approx(child["lambda_calibpath"], abs=1e-12)
    assert c.left_out.tolist() == child["donotcalib_tomodel"][0]
    assert c.p_uncalib == pytest.approx(child["p_uncalib"][0], abs=1e-12)

    ens = ref["neonate_ensemble_example_prior"]
    both = prepared(files, dict(zip(["eava", "insilicova"], ens["va_deaths_uncalib"], strict=True)), "neonate", "prior")
    for k, name in enumerate(["eava", "insilicova"]):
        assert both[name].lambda_calibpath == pytest.approx(ens["lambda_calibpath"][k], abs=1e-12)
        assert both[name].left_out.tolist() == ens["donotcalib_tomodel"][k]


def test_use_example_gives_the_package_example_counts(ref: dict[str, Any], files: data_files.CalibrationData) -> None:
    neonate, _ = to_counts("use_example", "insilicova", "neonate", files)
    child, _ = to_counts("use_example", "insilicova", "child", files)
    assert neonate.tolist() == NEONATE_EXAMPLE
    assert child.tolist() == ref["child_broad_counts"]


def test_specific_causes_one_hot_and_counts_reduce_alike(files: data_files.CalibrationData) -> None:
    deaths = [{"ID": "a", "cause": "Birth asphyxia"}, {"ID": "b", "cause": "Neonatal sepsis"},
              {"ID": "c", "cause1": "PREMATURITY"}, {"ID": "d", "cause": "Unspecified"}]  # fmt: skip
    counts, notes = to_counts(deaths, "insilicova", "neonate", files)
    assert counts.tolist() == [0, 0, 1, 1, 0, 1]
    assert any("Unspecified" in n for n in notes)
    one_hot = [{"ID": 1, "ipre": 1}, {"ID": 2, "sepsis_meningitis_inf": 1, "pneumonia": 0}, {"prematurity": 1}]
    assert to_counts(one_hot, "eava", "neonate", files)[0].tolist() == [0, 0, 1, 1, 0, 1]
    assert to_counts({"ipre": 1, "prematurity": 1, "sepsis_meningitis_inf": 1}, "eava", "neonate", files)[
        0
    ].tolist() == [0, 0, 1, 1, 0, 1]


def test_every_specific_cause_of_the_shipped_examples_maps(ref: dict[str, Any], files: Any) -> None:
    """Each algorithm's COMSA deaths with their specific causes: none unknown to the map (the
    infections the converted CSV lacks included), and InSilicoVA's give the package's counts."""
    read = 0
    for path in sorted(p for p in files.directory.glob("comsamoz_*.csv") if "_broad_" not in p.name):
        age = "neonate" if "_neonate_" in path.name else "child"
        algorithm = path.stem.rsplit("_", 1)[1]
        with path.open(newline="") as f:
            deaths = list(csv.DictReader(f))
        counts, _ = to_counts(deaths, algorithm, age, files)  # BadVAData naming any unmapped cause
        unspecified = sum(1 for d in deaths if d.get("cause", d.get("cause1")) == "Unspecified")
        assert counts.sum() == len(deaths) - unspecified
        if path.name == "comsamoz_CCVAoutput_child_insilicova.csv":
            assert counts.tolist() == ref["child_broad_counts"]
        if path.name.endswith("_neonate_insilicova.csv"):
            assert counts.tolist() == NEONATE_EXAMPLE
        read += 1
    assert read == 7
    eava = [{"ID": 1, "cause": "Sepsis"}, {"ID": 2, "cause": "NNT"}, {"ID": 3, "cause": "Meningitis"}]
    assert to_counts(eava, "eava", "neonate", files)[0].tolist() == [0, 0, 3, 0, 0, 0]
    child = [{"ID": 1, "cause1": "Pertussis"}, {"ID": 2, "cause": "Other infections"}, {"ID": 3, "cause": "Measles"}]
    assert to_counts(child, "eava", "child", files)[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 3, 0]


def test_a_cause_map_row_contradicting_the_package_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "vacalibration"
    directory.mkdir()
    for path in data_files.load().directory.iterdir():
        shutil.copyfile(path, directory / path.name)  # contents only: the shared copy is read-only
    with (directory / data_files.CAUSE_MAP_FILE).open("a") as f:
        f.write("child,heatstroke,other\nchild,tetanus,injury\n")
    with pytest.raises(data_files.DataUnavailable, match="'tetanus' \\(child\\) maps to injury"):
        data_files.load(directory)
    (directory / data_files.CAUSE_MAP_FILE).write_text(
        "age_group,specific_cause_lowercase,broad_cause\nchild,heatstroke,other\n"
    )
    added = data_files.load(directory).cause_map["child"]
    assert added["heatstroke"] == "other" and added["tetanus"] == "other_infections"


def test_every_bad_entry_is_named(files: data_files.CalibrationData) -> None:
    bad = [{"ID": "a", "cause": "Heartbreak"}, {"ID": "a", "cause": "Malaria"}, {"ID": "c"}]
    with pytest.raises(BadVAData) as caught:
        to_counts(bad, "insilicova", "child", files)
    message = str(caught.value)
    assert "'Heartbreak'" in message and "ID repeated" in message and "cause is missing" in message
    with pytest.raises(BadVAData, match=r"'flu' is not a broad cause.*pneumonia: -3"):
        to_counts({"flu": 3, "pneumonia": -3}, "eava", "neonate", files)
    with pytest.raises(BadVAData, match="death 1: needs exactly one broad cause"):
        to_counts([{"ipre": 1}, {"ipre": 1, "other": 1}], "eava", "neonate", files)


def test_input_validation_names_the_setting_when_data_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data_files.SETTING, "/nonexistent/vacalibration")
    with pytest.raises(ValueError, match=f"{data_files.SETTING}=/nonexistent/vacalibration"):
        CalibrationInput(va_data={"insilicova": "use_example"}, age_group="neonate", country="Mozambique")
    monkeypatch.setenv(data_files.SETTING, "")
    with pytest.raises(ValueError, match=f"set {data_files.SETTING}"):
        CalibrationInput(va_data={"insilicova": "use_example"}, age_group="neonate", country="Mozambique")


def test_cache_key_follows_the_deaths_not_their_form() -> None:
    example = CalibrationInput(va_data={"insilicova": "use_example"}, age_group="neonate", country="Mozambique")
    counts = dict(zip(data_files.CAUSES["neonate"], NEONATE_EXAMPLE, strict=True))
    same = CalibrationInput(va_data={"insilicova": counts}, age_group="neonate", country="Mozambique")
    other = CalibrationInput(va_data={"insilicova": counts}, age_group="neonate", country="Kenya")
    fixed = CalibrationInput(
        va_data={"insilicova": counts}, age_group="neonate", country="Mozambique", mmat_type="fixed"
    )
    assert cache_key(example) == cache_key(same)
    assert len({cache_key(same), cache_key(other), cache_key(fixed)}) == 3


def within_tolerance(got: dict[str, list[float]], want: dict[str, list[float]], draws: int) -> None:
    """The spec's rule: means within 0.01; interval ends within max(0.02, sd/4); both widened
    by √(10,000 / draws). sd is estimated from the package's interval: (up - low) / 3.92."""
    widen = math.sqrt(max(10_000 / draws, 1.0))
    sd = (np.array(want["upcredI"]) - np.array(want["lowcredI"])) / 3.92
    bound = np.maximum(0.02, sd / 4) * widen
    assert np.abs(np.array(got["mean"]) - want["postmean"]).max() <= 0.01 * widen
    assert np.all(np.abs(np.array(got["lower_ci"]) - want["lowcredI"]) <= bound)
    assert np.all(np.abs(np.array(got["upper_ci"]) - want["upcredI"]) <= bound)


def calibrate(files: data_files.CalibrationData, counts: dict[str, list[int]], age: str, mode: Any, draws: int,
              ensemble: bool = False, warmup: int | None = None) -> dict[str, Any]:  # fmt: skip
    from conveyor.packs.calibration.sampler import SamplerSettings, sample

    settings = SamplerSettings(n_warmup=warmup or draws, n_samples=draws, seed=1)
    request = model.Request({k: np.array(v, float) for k, v in counts.items()}, age, "Mozambique", mode, ensemble)
    prep = model.prepare_all(request, files)

    def run(*a: Any, **kw: Any) -> Any:
        return sample(*a, settings=settings, **kw)

    fits = {name: model.fit([p], mode, run) for name, p in prep.items()}
    if ensemble:
        fits[model.ENSEMBLE] = model.fit(list(prep.values()), mode, run)
    return model.result(request, prep, fits)


def test_neonate_prior_agrees_with_the_package_on_fewer_draws(ref: dict[str, Any], files: Any) -> None:
    r = ref["neonate_insilicova_mozambique_prior_comsamoz_public_broad"]
    out = calibrate(files, {"insilicova": NEONATE_EXAMPLE}, "neonate", "prior", draws=2000)
    within_tolerance(out["calibrated"]["insilicova"], r["postsumm"], draws=2000)
    mean = out["calibrated"]["insilicova"]["mean"]
    # causes left out keep their uncalibrated fraction exactly, with intervals of zero width
    for j in (0, 4):
        assert mean[j] == out["uncalibrated"]["insilicova"][j] == pytest.approx(r["p_uncalib"][j], abs=1e-15)
        assert out["calibrated"]["insilicova"]["lower_ci"][j] == out["calibrated"]["insilicova"]["upper_ci"][j]
    assert sum(out["calibrated_deaths"]["insilicova"]) == sum(NEONATE_EXAMPLE)
    assert out["diagnostics"]["insilicova"]["divergences"] == 0


def test_same_seed_same_result(files: Any) -> None:
    first = calibrate(files, {"insilicova": NEONATE_EXAMPLE}, "neonate", "fixed", draws=500)
    again = calibrate(files, {"insilicova": NEONATE_EXAMPLE}, "neonate", "fixed", draws=500)
    assert first["calibrated"] == again["calibrated"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # three fits for the ensemble, on a machine that may be busy
@pytest.mark.parametrize("case", ["neonate_prior", "neonate_fixed", "child_prior", "ensemble"])
def test_reference_cases_at_the_package_draws(case: str, ref: dict[str, Any], files: Any) -> None:
    """At the job's defaults: the package's 10,000 draws, after our (shorter) warm-up."""
    from conveyor.packs.calibration.sampler import SamplerSettings

    warmup = SamplerSettings().n_warmup
    if case == "neonate_prior":
        r = ref["neonate_insilicova_mozambique_prior_comsamoz_public_broad"]
        out = calibrate(files, {"insilicova": NEONATE_EXAMPLE}, "neonate", "prior", draws=10_000, warmup=warmup)
        within_tolerance(out["calibrated"]["insilicova"], r["postsumm"], draws=10_000)
        return
    names, counts, age, mode, key = {
        "neonate_fixed": (["insilicova"], [NEONATE_EXAMPLE], "neonate", "fixed", "neonate_insilicova_moz_fixed"),
        "child_prior": (["insilicova"], [ref["child_broad_counts"]], "child", "prior", "child_insilicova_moz_prior"),
        "ensemble": (["eava", "insilicova"], ref["neonate_ensemble_example_prior"]["va_deaths_uncalib"], "neonate",
                     "prior", "neonate_ensemble_example_prior"),
    }[case]  # fmt: skip
    r = ref[key]
    out = calibrate(files, dict(zip(names, counts, strict=True)), age, mode, 10_000, case == "ensemble", warmup)
    for k, name in enumerate([*names, "ensemble"] if case == "ensemble" else names):
        want = {s: r[s][k] for s in ("postmean", "lowcredI", "upcredI")}
        within_tolerance(out["calibrated"][name], want, draws=10_000)
        assert out["uncalibrated"][name] == pytest.approx(r["p_uncalib"][k], abs=1e-12)


@pytest.mark.timeout(600)  # compiles the two-algorithm sampler: slow on a busy machine
def test_ensemble_fixed_of_one_algorithm_twice_is_that_algorithm_with_twice_the_deaths(files: Any) -> None:
    """Ensemble in `fixed` mode: K algorithms share one CSMF and each likelihood term is added, so
    the same deaths and matrix given twice are the same posterior as doubled deaths given once
    (the path correction depends on the fractions only)."""
    from conveyor.packs.calibration.sampler import SamplerSettings, sample

    settings = SamplerSettings(n_warmup=500, n_samples=2000, seed=3)  # 500: test_same_seed's compiled sampler

    def run(*a: Any, **kw: Any) -> Any:
        return sample(*a, settings=settings, **kw)

    once = prepared(files, {"eava": NEONATE_EXAMPLE}, "neonate", "fixed")["eava"]
    doubled = prepared(files, {"eava": [2 * x for x in NEONATE_EXAMPLE]}, "neonate", "fixed")["eava"]
    assert doubled.lambda_calibpath == once.lambda_calibpath
    ensemble = model.fit([once, once], "fixed", run)
    alone = model.fit([doubled], "fixed", run)
    assert ensemble.draws is not None and alone.draws is not None
    assert np.abs(ensemble.draws.mean(axis=0) - alone.draws.mean(axis=0)).max() < 0.005
    # and the job's result for an ensemble in fixed mode: each algorithm, then the ensemble
    request = model.Request({"eava": np.array(NEONATE_EXAMPLE, float), "insilicova": np.array(NEONATE_EXAMPLE, float)},
                            "neonate", "Mozambique", "fixed", True)  # fmt: skip
    prep = model.prepare_all(request, files)
    fits = {name: model.fit([p], "fixed", run) for name, p in prep.items()}
    fits[model.ENSEMBLE] = model.fit(list(prep.values()), "fixed", run)
    out = model.result(request, prep, fits)
    assert out["ensemble"] is True and list(out["calibrated"]) == ["eava", "insilicova", "ensemble"]
    for name in out["calibrated"]:
        summary = out["calibrated"][name]
        assert sum(summary["mean"]) == pytest.approx(1.0, abs=1e-9)
        bounds = zip(summary["lower_ci"], summary["mean"], summary["upper_ci"], strict=True)
        assert all(lo <= m <= hi for lo, m, hi in bounds)
    # the ensemble sits between the two algorithms' calibrations, cause by cause
    for j in range(6):
        a, b = out["calibrated"]["eava"]["mean"][j], out["calibrated"]["insilicova"]["mean"][j]
        assert min(a, b) - 0.01 <= out["calibrated"]["ensemble"]["mean"][j] <= max(a, b) + 0.01


class _RecordingContext:
    """What `run` calls on a job's Context, recorded; `stop_after` progress calls, it raises as
    a cancelled job's checkpoint does."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.logs: list[str] = []
        self.stop_after = stop_after

    def progress(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        if self.stop_after is not None and len(self.calls) > self.stop_after:
            raise RuntimeError("cancelled")

    def info(self, message: str, **_: Any) -> None:
        self.logs.append(message)

    warning = info


@pytest.mark.timeout(600)  # compiles the one- and two-algorithm samplers: slow on a busy machine
def test_an_ensemble_job_samples_its_joint_fit_beside_the_algorithms_and_stops_with_the_job() -> None:
    import threading

    from conveyor.packs.calibration.jobtype import run

    counts = dict(zip(data_files.CAUSES["neonate"], NEONATE_EXAMPLE, strict=True))
    request = CalibrationInput(va_data={"eava": counts, "insilicova": counts}, age_group="neonate",
                               country="Mozambique", mmat_type="fixed", n_mcmc=600, n_burn=500, seed=3)  # fmt: skip
    ctx = _RecordingContext()
    out = run(ctx, request)  # type: ignore[arg-type]
    assert list(out["calibrated"]) == ["eava", "insilicova", "ensemble"]
    processed = [c["processed"] for c in ctx.calls if "processed" in c]
    assert processed == sorted(processed) and processed[-1] == 3 * (600 + 500)
    steps = [c["step_name"] for c in ctx.calls if "step_name" in c]
    assert steps.index("Sampling the posterior (ensemble, fixed matrix)") > steps.index(
        "Sampling the posterior (insilicova, fixed matrix)"
    )
    assert any(m.startswith("ensemble: sampled in") for m in ctx.logs)
    # the job stopped while its first algorithm sampled: the joint fit's thread ends with it
    stopped = _RecordingContext(stop_after=4)
    with pytest.raises(RuntimeError, match="cancelled"):
        run(stopped, request.model_copy(update={"n_mcmc": 100_000}))  # type: ignore[arg-type]
    assert not [t for t in threading.enumerate() if t.name.startswith("calibration-ensemble")]
