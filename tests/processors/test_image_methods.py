"""``adhunt features --images`` -> ``adhunt train ae|vae --inputs images`` -> ``adhunt score`` and
``adhunt infer``: the image pseudo-columns of ``read_table`` end to end, on generated ROOT files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from eventfiles import make_events, write_events
from typer.testing import CliRunner

from adhunt.histograms import DEFAULT_MJJ_EDGES, cut_label, cut_spectra
from adhunt.jobs.cli import app
from adhunt.jobs.executors import ExecutorConfig
from adhunt.jobs.infer import run_infer
from adhunt.models.base import ResonantModel
from adhunt.processors.features import FeatureConfig
from adhunt.processors.inference import InferenceError, clear_model_cache
from adhunt.schema import IMAGE_PSEUDO_COLUMNS
from adhunt.tables import FeatureTableError, read_images, read_table

SIZE = 16
KINDS = ["dijet"] * 70 + ["soft", "monojet", "nan", "empty"]
FAST = "epochs: 2\nbatch_size: 32\nlatent_dim: 3\nhidden: [16]\nnum_threads: 1\n"


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _features(fileset, out, *options):
    res = CliRunner().invoke(
        app, ["features", str(fileset), "--output", str(out), "--chunksize", "25", *options]
    )
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("image-methods")
    columns = make_events(KINDS, seed=11)
    columns["truthLabel"] = np.arange(len(KINDS), dtype=np.int32) % 2  # labels for compare
    source = write_events(base / "a.root", columns)
    fileset = base / "fileset.json"
    fileset.write_text(json.dumps({"qcd": [str(source)]}))
    return {
        "fileset": fileset,
        "images": _features(fileset, base / "images", "--images", "--image-size", str(SIZE)),
        "small": _features(fileset, base / "small", "--images", "--image-size", "8"),
        "plain": _features(fileset, base / "plain"),
    }


@pytest.fixture(scope="module")
def trained(runs, tmp_path_factory):
    base = tmp_path_factory.mktemp("image-models")
    config = base / "fast.yaml"
    config.write_text(FAST)
    tnt_config = base / "tnt.yaml"
    tnt_config.write_text(
        "signal_fraction: 0.3\nae:\n  "
        + FAST.strip().replace("\n", "\n  ")
        + "\nclassifier:\n  n_ensemble: 1\n  epochs: 2\n  batch_size: 32\n  hidden: [16]\n"
        "  num_threads: 1\n"
    )
    models = {}
    for method in ("ae", "vae", "tnt"):
        out = base / method
        res = CliRunner().invoke(
            app,
            [
                "train", method, "--inputs", "images", "--features", str(runs["images"]),
                "--output", str(out), "--folds", "2", "--rule", "max",
                "--config", str(tnt_config if method == "tnt" else config),
            ],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        models[method] = out
    return models


def test_read_table_image_columns_align_with_read_images(runs):
    columns = ["mj1", *IMAGE_PSEUDO_COLUMNS]
    frame = read_table(runs["images"], columns=columns)
    images = read_images(runs["images"])
    assert len(frame) == len(images) == KINDS.count("dijet")
    for row in range(len(frame)):
        for jet, name in enumerate(IMAGE_PSEUDO_COLUMNS):
            np.testing.assert_array_equal(frame[name].iloc[row], images[row, jet])
    # the same rows, features and keys as without the images; one dataset's directory too
    plain = read_table(runs["images"], columns=["mj1"])
    pd.testing.assert_frame_equal(frame.drop(columns=list(IMAGE_PSEUDO_COLUMNS)), plain)
    one = read_table(runs["images"] / "qcd", columns=columns)
    np.testing.assert_array_equal(one["image_j2"].iloc[-1], images[-1, 1])
    assert "image_j1" not in read_table(runs["images"]).columns  # only when asked for


def test_read_table_refuses_tables_without_images(runs, tmp_path):
    with pytest.raises(FeatureTableError, match=r"--features: .*plain has no jet images"):
        read_table(runs["plain"], columns=["image_j1"], what="--features")
    foreign = tmp_path / "t.parquet"
    read_table(runs["plain"]).to_parquet(foreign)
    with pytest.raises(FeatureTableError, match="not an `adhunt features` directory"):
        read_table(foreign, columns=["mj1", "image_j2"])


def test_train_and_score_cli(runs, trained, tmp_path):
    table = read_table(runs["images"], columns=list(IMAGE_PSEUDO_COLUMNS))
    for method, path in trained.items():
        model = ResonantModel.load(path)
        assert model.method == method and model.image_size == SIZE
        assert model.config.inputs == "images"
        assert (model.config.ae if method == "tnt" else model.config).network == "conv"
        out = tmp_path / f"{method}.parquet"
        res = CliRunner().invoke(
            app, ["score", str(path), "--features", str(runs["images"]), "--output", str(out)]
        )
        assert res.exit_code == 0, res.output
        scores = pd.read_parquet(out)
        assert (scores["score_mode"] == "kfold").all()  # every event was a training event
        np.testing.assert_array_equal(scores["event"], table["event"])
        np.testing.assert_array_equal(scores["score"], model.score(table, "kfold"))
        assert np.isfinite(scores["score"]).all()
    ae = str(trained["ae"])
    for table_dir, message in (("plain", "has no jet images"), ("small", "8x8 images")):
        res = CliRunner().invoke(
            app, ["score", ae, "--features", str(runs[table_dir]), "--output", str(tmp_path / "x")]
        )
        assert res.exit_code != 0 and message in " ".join(res.output.split()), res.output
    res = CliRunner().invoke(
        app,
        ["train", "cwola", "--inputs", "images", "--features", str(runs["images"]),
         "--output", str(tmp_path / "cwola")],
    )  # fmt: skip
    said = " ".join(res.output.split())
    assert res.exit_code != 0 and "--inputs does not apply to method 'cwola'" in said, said


def test_infer_scores_image_models_like_direct_scoring(runs, trained, tmp_path):
    table = read_table(runs["images"], columns=list(IMAGE_PSEUDO_COLUMNS))
    clear_model_cache()
    result = run_infer(
        runs["fileset"], trained, tmp_path / "infer", ExecutorConfig("iterative", chunksize=25),
        reference=runs["images"], efficiencies=(0.2,), reference_selection="all",
        feature_config=FeatureConfig(images=True, image_size=SIZE),
    )  # fmt: skip
    edges = np.asarray(DEFAULT_MJJ_EDGES)
    for name, path in trained.items():
        scores = ResonantModel.load(path).score(table, mode="kfold")
        t = result.thresholds[name][cut_label(0.2)]
        expected, _ = np.histogram(table["mjj"].to_numpy()[scores >= t], bins=edges)
        assert 0 < expected.sum() < len(table)
        np.testing.assert_array_equal(
            cut_spectra(result.histogram, name, None)[cut_label(0.2)].values(), expected
        )
    for config, message in (
        (FeatureConfig(), "computes none"),
        (FeatureConfig(images=True, image_size=8), "trained on 16x16 jet images"),
    ):
        with pytest.raises(InferenceError, match=message):
            run_infer(
                runs["fileset"], {"ae": trained["ae"]}, tmp_path / "refused",
                ExecutorConfig("iterative", chunksize=25), reference=runs["images"],
                feature_config=config,
            )  # fmt: skip


def test_compare_reads_images(runs, trained, tmp_path):
    out = tmp_path / "compare"
    res = CliRunner().invoke(
        app,
        ["compare", *(str(p) for p in trained.values()), "--features", str(runs["images"]),
         "--output", str(out), "--all-mjj", "--min-background", "5"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == len(trained) and table["auc"].between(0, 1).all()
