"""The embedded default shows the paper's phenomenon: the claims README.md makes about `make run`,
checked on a real run of the real Snakefile with config.yaml (BLiMP lighter, see the config)."""

import pandas as pd
import pytest

from conftest import REPO, link_workflow, snakemake_ok

LIGHT_BLIMP = [
    "--configfile",
    str(REPO / "tests" / "configs" / "default-light-blimp.yaml"),
]


def phenomenon_failures(tables) -> list[str]:
    """What the default's results fail of issue 14's criteria (empty: all hold)."""
    runs, phases, uas, loss = (tables[name] for name in ("runs", "phases", "uas", "loss"))
    kind = runs.set_index("run")["kind"]
    run_of = {k: kind.index[kind == k][0] for k in ("baseline", "sas_plus", "sas_minus", "release")}
    ev = phases.set_index(["run", "event"])

    def event(run_kind, name):
        return ev.loc[(run_of[run_kind], name)]

    def final(table, run_kind, column):
        rows = table[table["run"] == run_of[run_kind]].sort_values("step")
        return float(rows[column].iloc[-1])

    steps = sorted(uas[uas["run"] == run_of["baseline"]]["step"])
    index = {step: i for i, step in enumerate(steps)}
    failures = []
    onset, breakthrough, capabilities = (
        event("baseline", e) for e in ("structure_onset", "breakthrough", "capabilities_onset")
    )
    if not (onset["detected"] and breakthrough["detected"] and capabilities["detected"]):
        failures.append("baseline: structure onset, breakthrough and capabilities onset not all detected")
    elif capabilities["value"] - onset["value"] < 0.10:
        failures.append(
            f"baseline: UAS rises {capabilities['value'] - onset['value']:.3f} < 0.10 "
            "between the structure and the capabilities onsets"
        )
    drop = event("baseline", "loss_drop")
    if not drop["detected"]:
        failures.append(f"baseline: no loss drop ({drop['reason']})")
    elif breakthrough["detected"]:
        near = abs(index[drop["step"]] - index[breakthrough["step"]]) <= 1
        between = (
            onset["detected"] and capabilities["detected"] and onset["step"] <= drop["step"] <= capabilities["step"]
        )
        if not (near or between):
            failures.append(
                f"baseline: loss drop at {drop['step']:g} is neither within one checkpoint of the "
                f"breakthrough ({breakthrough['step']:g}) nor between the onsets"
            )
    if event("sas_minus", "structure_onset")["detected"]:
        failures.append("SAS-: a structure onset was detected")
    if not final(uas, "sas_minus", "uas") < final(uas, "baseline", "uas"):
        failures.append("SAS-: final UAS not below the baseline's")
    if not final(loss, "sas_minus", "val_mlm_loss") > final(loss, "baseline", "val_mlm_loss"):
        failures.append("SAS-: final held-out loss not above the baseline's")
    plus = event("sas_plus", "breakthrough")
    if not plus["detected"] or not breakthrough["detected"] or index[plus["step"]] > index[breakthrough["step"]] - 2:
        failures.append("SAS+: breakthrough not detected at least two checkpoints before the baseline's")
    k = int(runs.set_index("run").at[run_of["release"], "release_step"])
    if not onset["detected"] or not k < onset["step"]:
        failures.append(f"release: k = {k} not before the baseline's structure onset")
    return failures


@pytest.mark.slow
def test_the_default_shows_the_transition(tmp_path):
    workdir = link_workflow(tmp_path)
    snakemake_ok("--cores", "2", *LIGHT_BLIMP, cwd=workdir, timeout=1500)
    folder = workdir / "results" / "tables"
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("runs", "phases", "uas", "loss")}
    assert phenomenon_failures(tables) == []
