"""The resonant benchmark's jet-image method variants (``ae-img``: ``ae`` with ``inputs: images``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_resonant as bench


def test_variant_names():
    assert bench.method_variant("ae-img") == ("ae", "images")
    assert bench.method_variant("tnt-img") == ("tnt", "images")
    assert bench.method_variant("ae") == ("ae", "features")
    assert bench.method_variant("-img") == ("-img", "features")


def test_variant_config_and_inputs():
    args = bench.parse_args(
        ["--methods", "cwola,ae,vae-img,tnt-img", "--images", "16", "--image-epochs", "3"]
    )
    vae = bench.variant_config("vae-img", args)
    assert (vae.inputs, vae.epochs, vae.network) == ("images", 3, "conv")
    ae = bench.variant_config("ae", args)
    assert ae.inputs == "features" and ae.epochs != 3  # the feature method is left as it is
    tnt = bench.variant_config("tnt-img", args)
    assert (tnt.inputs, tnt.ae.inputs, tnt.ae.epochs, tnt.classifier.epochs) == (
        "images", "images", 3, 3,
    )  # fmt: skip
    assert bench.method_features("vae-img", ["mj1"]) == ("image_j1", "image_j2")
    assert bench.method_features("cwola", ["mj1"]) == ("mj1",)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "ae-img"], "--images"),
        (["--methods", "cwola-img", "--images", "16"], "no jet-image inputs"),
        (["--methods", "foo-img", "--images", "16"], "unknown method"),
    ],
)
def test_variant_refusals(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args([*argv, "--sculpt-method", ""])
    assert message in capsys.readouterr().err
