"""A short, seeded run of the fuzz harness (tests/fuzz.py): no tracebacks, hangs or unclear errors."""

from __future__ import annotations

import pyarrow as pa
import pytest

import fuzz


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return fuzz.run_campaign(120, seed=1, timeout=20.0, workdir=tmp_path_factory.mktemp("fuzz"))


def test_no_tracebacks_hangs_or_unclear_errors(campaign):
    assert campaign.counts["refused"] > 0 and sum(campaign.counts.values()) == 120
    bad = [f for f in campaign.failures if f[0] != "wrong"]
    assert not bad, bad


def test_no_silent_wrong_output(campaign):
    assert campaign.counts["wrong"] == 0, campaign.failures


def test_the_classifier_catches_wrong_output_and_unclear_errors(tmp_path):
    path = tmp_path / "m.parquet"
    same, other = pa.table({"a": [1, 2]}), pa.table({"a": [1, 3]})
    base = fuzz.Result(0, "", same, 0.0)
    assert fuzz.classify_outcome("decompress", fuzz.Result(0, "", other, 0.0), base, path) == "wrong"
    assert fuzz.classify_outcome("decompress", fuzz.Result(0, "", same, 0.0), base, path) == "unchanged"
    assert fuzz.classify_outcome("decode", fuzz.Result(2, "geocodec decode: error: bad\n", None, 0.0), base,
                                 path) == "unclear"
    assert fuzz.classify_outcome("decode", fuzz.Result(2, f"geocodec decode: error: {path}: bad\n", None, 0.0),
                                 base, path) == "refused"
    assert fuzz.classify_outcome("info", fuzz.Result(None, "", None, 9.0), base, path) == "hang"
    assert fuzz.classify_outcome("info", fuzz.Result(-1, "", None, 0.0, "Traceback"), base, path) == "traceback"
    assert "Failures (0)" in fuzz.report_markdown(fuzz.Campaign(0, 1))
