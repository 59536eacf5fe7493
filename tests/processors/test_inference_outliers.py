"""``adhunt infer`` scores outlier models (ae, force) through the model API, like the resonant ones."""

from __future__ import annotations

import numpy as np
import pytest

from adhunt.histograms import DEFAULT_MJJ_EDGES, cut_label, cut_spectra
from adhunt.jobs.executors import ExecutorConfig
from adhunt.jobs.features import run_features
from adhunt.jobs.infer import run_infer
from adhunt.models.autoencoders import Autoencoder, AutoencoderConfig
from adhunt.models.base import ResonantModel
from adhunt.models.force import Force, ForceConfig
from adhunt.processors.inference import clear_model_cache
from adhunt.regions import SignalRegion
from adhunt.schema import INVARIANT_JET_FEATURES, JET_FEATURES
from adhunt.tables import read_features

WINDOW = SignalRegion(3000.0, 3600.0)


@pytest.fixture(scope="module")
def features_dir(fileset_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("outlier-inference-features")
    run_features(fileset_path, out, chunksize=500)
    return out


def test_infer_equals_direct_scoring(fileset_path, features_dir, tmp_path):
    table = read_features(features_dir)
    ae_cfg = AutoencoderConfig(epochs=3, num_threads=1, control_region="abs(delta_eta) >= 0.5")
    force_cfg = ForceConfig(epochs=3, n_ensemble=2, num_threads=1)
    paths = {
        "ae": Autoencoder(JET_FEATURES, WINDOW, n_folds=3, seed=1, config=ae_cfg).fit(table).save(tmp_path / "ae"),
        "force": Force(INVARIANT_JET_FEATURES, WINDOW, n_folds=3, seed=2, config=force_cfg).fit(table).save(tmp_path / "force"),
    }  # fmt: skip
    clear_model_cache()
    result = run_infer(
        fileset_path, paths, tmp_path / "infer", ExecutorConfig("iterative", chunksize=250),
        reference=features_dir, efficiencies=(0.1,),
    )  # fmt: skip
    edges = np.asarray(DEFAULT_MJJ_EDGES)
    for name, path in paths.items():
        scores = ResonantModel.load(path).score(table, mode="kfold")
        t = result.thresholds[name][cut_label(0.1)]
        expected, _ = np.histogram(table["mjj"].to_numpy()[scores >= t], bins=edges)
        np.testing.assert_array_equal(
            cut_spectra(result.histogram, name, None)[cut_label(0.1)].values(), expected
        )
