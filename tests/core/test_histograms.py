"""The portable histogram file: hist's UHI JSON, written and read back by adhunt.histograms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adhunt.histograms import (
    cut_spectra,
    make_inference_histogram,
    read_histogram_json,
    write_histogram_json,
)


def test_histogram_json_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    meta = {"thresholds": {"a": {"10%": 0.5, "1%": 0.9, "0.1%": 0.99}}, "mode": "kfold"}
    h = make_inference_histogram(["a", "b"], datasets=["qcd"], metadata=meta)
    n = 500
    h.fill(
        dataset=rng.choice(["qcd", "wprime"], n),  # "wprime" grows the category axis
        model=rng.choice(["a", "b"], n),
        bkg_eff=rng.choice([0.0005, 0.005, 0.05, 0.5], n),
        mjj=rng.uniform(1000, 9000, n),  # under- and overflow of the mjj axis
        weight=rng.uniform(0.5, 2.0, n),  # variances differ from values
    )
    path = write_histogram_json(h, tmp_path / "histograms.json")
    assert json.loads(path.read_text())["uhi_schema"] >= 1  # hist's own schema, plain JSON
    back = read_histogram_json(path)

    assert back == h
    assert back.metadata == meta
    for a, b in zip(h.axes, back.axes, strict=True):
        assert (a.name, a.label, a.traits) == (b.name, b.label, b.traits)
        assert (
            list(a) == list(b)
            if a.name in ("dataset", "model")
            else np.array_equal(a.edges, b.edges)
        )
    view, back_view = h.view(flow=True), back.view(flow=True)
    assert np.array_equal(view["value"], back_view["value"])
    assert np.array_equal(view["variance"], back_view["variance"])
    assert not np.array_equal(view["value"], view["variance"])
    mjj = h.axes.name.index("mjj")
    assert np.asarray(back_view["value"]).sum(axis=tuple(i for i in range(4) if i != mjj))[0] > 0
    assert back_view["value"].sum() == pytest.approx(view["value"].sum())
    # the read-back histogram works with the rest of the core
    assert cut_spectra(back, "a")["1%"] == cut_spectra(h, "a")["1%"]


def test_histogram_json_bad_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"not": "a histogram"}')
    with pytest.raises(ValueError, match="not a histogram JSON"):
        read_histogram_json(path)
