"""Models know their inputs: a model records how its training features were made, and ``score``,
``evaluate``, ``infer`` and ``sculpting`` refuse a table (or a processor configuration) made with
other settings, naming the field and both values.

Real chain: small NanoAOD-like ROOT files (``tests/eventfiles.py``) -> ``adhunt features`` at
R = 1.0 and R = 0.4 -> ``adhunt train`` on the R = 1.0 table -> the commands under test.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from clirun import invoke
from eventfiles import make_events, write_events

from adhunt.models.base import ResonantModel
from adhunt.provenance import (
    FeatureDefinitionError,
    check_feature_definition,
    definition_differences,
    feature_definition,
    model_feature_definition,
    table_feature_definition,
)
from adhunt.tables import read_table


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("featdefs")
    events = write_events(base / "dijets.root", make_events(["dijet"] * 300, seed=11))
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(events)]}))
    r10, r04 = base / "r10", base / "r04"
    for out, extra in ((r10, []), (r04, ["--radius", "0.4"])):
        r = invoke(["features", fileset, "-o", out, "--chunksize", 150, *extra])
        assert r.exit_code == 0, r.output
    mjj = read_table(r10)["mjj"].to_numpy()
    low, high = np.quantile(mjj, [0.4, 0.6])
    config = base / "fast.yaml"
    config.write_text("n_ensemble: 1\nhgb_max_iter: 10\nnum_threads: 1\n")
    model = base / "model"
    common = ["--window", f"{low:.1f}:{high:.1f}", "--folds", 2, "--config", config]
    r = invoke(["train", "cwola", "--features", r10, "-o", model, *common])
    assert r.exit_code == 0, r.output
    # The same events as a foreign table (plain parquet, no adhunt definition), and a model on it.
    foreign = base / "foreign"
    foreign.mkdir()
    read_table(r10).to_parquet(foreign / "events.parquet", index=False)
    foreign_model = base / "foreign_model"
    r = invoke(["train", "cwola", "--features", foreign, "-o", foreign_model, *common])
    assert r.exit_code == 0, r.output
    return {"base": base, "fileset": fileset, "r10": r10, "r04": r04, "model": model,
            "foreign_model": foreign_model}  # fmt: skip


def test_model_records_the_definition_of_its_training_table(chain):
    definition = model_feature_definition(ResonantModel.load(chain["model"]))
    written = json.loads((chain["r10"] / "features_config.json").read_text())["features"]
    assert definition["features"] == written
    assert definition["features"]["radius"] == 1.0 and definition["features"]["jets"] == "pfcands"
    assert "mjj" in definition["columns"] and "tau21_j1" in definition["columns"]
    assert table_feature_definition(chain["r04"])["features"]["radius"] == 0.4
    assert table_feature_definition(chain["r04"] / "qcd")["features"]["radius"] == 0.4
    assert table_feature_definition(chain["base"] / "foreign") is None
    assert model_feature_definition(ResonantModel.load(chain["foreign_model"])) is None


def test_differences_name_only_feature_changing_fields():
    base = {"radius": 1.0, "beta": 1.0, "trigger": {"pt_min": 1200.0}, "luminosity": None,
            "lumi_mask": None}  # fmt: skip
    other = {**base, "trigger": {"pt_min": 500.0}, "luminosity": 1000.0, "lumi_mask": "g.json"}
    diffs = definition_differences(feature_definition(base), feature_definition(other))
    assert diffs == [("trigger.pt_min", 1200.0, 500.0)]
    # opt-in extra columns do not change the others; soft drop only matters when both have them
    extra = {**base, "extended": True, "images": True, "softdrop_zcut": 0.2}
    assert definition_differences(feature_definition(base), feature_definition(extra)) == []
    both = definition_differences(
        feature_definition({**extra, "softdrop_zcut": 0.1}), feature_definition(extra)
    )
    assert both == [("softdrop_zcut", 0.1, 0.2)]
    # a field recorded on one side only (an older adhunt) is not a difference
    assert (
        definition_differences(feature_definition(base), feature_definition({"radius": 1.0})) == []
    )
    with pytest.raises(FeatureDefinitionError, match=r"beta: model trained on 1.0, table has 2.0"):
        check_feature_definition(
            feature_definition(base),
            feature_definition({**base, "beta": 2.0}),
            model="m",
            table="t",
        )


def test_score_refuses_a_table_with_another_radius(chain, tmp_path):
    out = tmp_path / "scores.parquet"
    r = invoke(["score", chain["model"], "--features", chain["r04"], "-o", out])
    assert r.exit_code != 0
    assert "radius: model trained on 1.0, table has 0.4" in r.text
    assert str(chain["r04"]) in r.text and "Traceback" not in r.output
    assert not out.exists()
    r = invoke(["score", chain["model"], "--features", chain["r10"], "-o", out])  # same radius
    assert r.exit_code == 0, r.output
    assert out.is_file()


def test_evaluate_and_sculpting_refuse_another_radius(chain, tmp_path):
    r = invoke(["evaluate", chain["model"], "--test", chain["r04"], "-o", tmp_path / "ev"])
    assert r.exit_code != 0 and "radius: model trained on 1.0, table has 0.4" in r.text
    r = invoke(["sculpting", "--features", chain["r04"], "--model", chain["model"],
                "-o", tmp_path / "sc"])  # fmt: skip
    assert r.exit_code != 0 and "radius: model trained on 1.0, table has 0.4" in r.text
    assert "Traceback" not in r.output


def test_infer_refuses_a_processor_config_with_another_radius(chain, tmp_path):
    config = tmp_path / "r04.yaml"
    config.write_text("radius: 0.4\n")
    out = tmp_path / "infer"
    r = invoke(["infer", chain["fileset"], "-m", f"cwola={chain['model']}", "-o", out,
                "--config", config, "--efficiencies", "0.5"])  # fmt: skip
    assert r.exit_code != 0
    assert "radius: model trained on 1.0, processor has 0.4" in r.text
    assert "Traceback" not in r.output and not (out / "infer.json").exists()
    # --reference with another radius is refused too (the thresholds would be calibrated on it)
    r = invoke(["infer", chain["fileset"], "-m", f"cwola={chain['model']}", "-o", out,
                "--reference", chain["r04"], "--efficiencies", "0.5"])  # fmt: skip
    assert r.exit_code != 0 and "radius: model trained on 1.0, table has 0.4" in r.text
    # the same radius (default config) runs
    r = invoke(["infer", chain["fileset"], "-m", f"cwola={chain['model']}", "-o", out,
                "--efficiencies", "0.5"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (out / "infer.json").is_file()


def test_foreign_table_model_is_accepted_with_a_warning(chain, tmp_path):
    out = tmp_path / "scores.parquet"
    r = invoke(["score", chain["foreign_model"], "--features", chain["r04"], "-o", out])
    assert r.exit_code == 0, r.output
    assert "does not record how its training features were made" in r.text
    # a model with a definition scoring a foreign table: accepted, with a warning
    foreign = tmp_path / "foreign"
    shutil.copytree(chain["base"] / "foreign", foreign)
    r = invoke(["score", chain["model"], "--features", foreign, "-o", out])
    assert r.exit_code == 0, r.output
    assert "records no feature definition" in r.text


def test_train_refuses_signal_made_with_another_radius(chain, tmp_path):
    r = invoke(["train", "cwola", "--features", chain["r10"], "-o", tmp_path / "m", "--inject", 10,
                "--signal", chain["r04"]])  # fmt: skip
    assert r.exit_code != 0
    assert "radius: 1.0 in --features" in r.text and "0.4" in r.text
    assert not (tmp_path / "m").exists()


def test_combine_refuses_members_trained_on_another_radius(chain, tmp_path):
    """Members may use different columns, but not columns made with another jet definition."""
    common = ["--folds", 2, "--config", chain["base"] / "fast.yaml"]
    window = ResonantModel.load(chain["model"]).region
    m04 = tmp_path / "m04"
    r = invoke(["train", "cwola", "--features", chain["r04"], "-o", m04,
                "--window", f"{window.low}:{window.high}", *common])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = invoke(["train", "combine", "--models", f"{chain['model']},{m04}", "-o", tmp_path / "c"])
    assert r.exit_code == 2
    assert "radius" in r.text and "one feature definition" in r.text, r.output
    assert not (tmp_path / "c").exists()
