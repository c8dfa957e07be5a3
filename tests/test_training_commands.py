"""``geocodec train codec|heads|ships`` (geocodec.training.commands): one parser per target, shared with
``python -m geocodec.training.<module>``, and ``--report-only`` rendering each page from its saved report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geocodec.cli.main import build_parser, main
from geocodec.training import commands

REPO = Path(__file__).resolve().parents[1]


def _parse(*argv):
    return build_parser().parse_args(commands.with_default_target(list(argv)))


def test_train_without_a_target_is_the_codec():
    a = _parse("train", "--steps", "5", "--device", "cuda")
    assert a.func is commands.run_codec and a.steps == 5 and a.device == "cuda" and a.prog == "geocodec train codec"
    assert _parse("train").func is commands.run_codec
    from geocodec.resources import DEFAULT_MODEL

    assert _parse("train").model == DEFAULT_MODEL     # the codec users get by default is the one train reproduces
    assert commands.with_default_target(["train", "-h"]) == ["train", "-h"]
    assert commands.with_default_target(["info", "train"]) == ["info", "train"]


@pytest.mark.parametrize("target", commands.TARGETS)
def test_python_m_takes_the_options_of_geocodec_train(target):
    """``python -m geocodec.training.<x>`` and ``geocodec train <target>`` are one parser definition."""
    def options(p):
        return sorted(s for act in p._actions for s in act.option_strings)

    sub = next(act for act in build_parser()._actions if getattr(act, "choices", None) and "train" in act.choices)
    train = sub.choices["train"]
    targets = next(act for act in train._actions if getattr(act, "choices", None) and target in act.choices)
    assert options(targets.choices[target]) == options(commands.parser(target))
    assert "--report-only" in options(commands.parser(target))


def test_train_heads_report_only_writes_the_committed_page(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "heads"
    out.mkdir()
    shutil.copy(REPO / "geocodec" / "models" / "heads" / "scores.json", out / "scores.json")
    docs = tmp_path / "docs"
    (docs / "img").mkdir(parents=True)
    rc = main(["train", "heads", "--report-only", "--out", str(out), "--docs", str(docs / "heads.md"),
               "--plot", str(docs / "img" / "rate_utility_landcover.png"),
               "--plot-monitor", str(docs / "img" / "rate_utility_monitor.png")])
    assert rc == 0 and "from" in capsys.readouterr().out
    assert (docs / "heads.md").read_text() == (REPO / "docs" / "heads.md").read_text()
    assert (docs / "img" / "rate_utility_monitor.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["s2-5band-v1", "s2-5band-v2", "s2-5band-v2u"])
def test_train_codec_report_only_writes_the_committed_card(tmp_path, name):
    """Each shipped card is the rendering of its model.json by the command the card names, and the training
    command it records names its model (so it reproduces that model whatever the default is)."""
    import json

    from geocodec.training.model_card import card_path

    model = REPO / "geocodec" / "models" / name
    card = tmp_path / "card.md"
    assert main(["train", "codec", "--model", name, "--report-only", "--out", str(model), "--card", str(card)]) == 0
    text = card.read_text()
    assert text == (REPO / card_path(name)).read_text()
    assert f"`geocodec train codec --model {name} --out geocodec/models/{name} --report-only`" in text
    assert f" --model {name}" in json.loads((model / "model.json").read_text())["training"]["command"]


def test_report_only_without_a_report_names_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "codec", "--report-only", "--out", str(tmp_path)])
    assert e.value.code == 2 and "model.json is missing" in capsys.readouterr().err


def test_train_codec_knows_its_models_and_refuses_others(capsys):
    """``--model`` picks a preset (architecture, data, objective); an unknown name is one clear error."""
    from geocodec.training.presets import PRESETS

    assert {"s2-5band-v1", "s2-5band-v2"} <= set(PRESETS)
    v1, v2 = PRESETS["s2-5band-v1"], PRESETS["s2-5band-v2"]
    assert (v1.channels, v1.distortion, v1.greenearthnet) == (24, "log", False)
    assert v2.channels > v1.channels and v2.distortion == "linear" and v2.greenearthnet
    assert all(p.name == n for n, p in PRESETS.items())
    with pytest.raises(SystemExit) as e:
        main(["train", "codec", "--model", "s2-9band-v7", "--steps", "1"])
    assert e.value.code == 2 and "unknown model 's2-9band-v7'" in capsys.readouterr().err


def test_presets_import_without_torch():
    import subprocess
    import sys

    code = "import sys, geocodec.training.presets, geocodec.training.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_train_ships_report_only_reads_and_writes_the_given_paths(tmp_path, capsys):
    """``--out``/``--docs``/``--plot`` (the ship head of another codec lives in its own folder): the page rendered
    from OUT/ships_scores.json is the committed one when OUT holds the committed report."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "heads-other"
    out.mkdir()
    shutil.copy(REPO / "geocodec" / "models" / "heads" / "ships_scores.json", out / "ships_scores.json")
    doc, plot = tmp_path / "ships.md", tmp_path / "ships.png"
    assert main(["train", "ships", "--report-only", "--out", str(out), "--docs", str(doc), "--plot", str(plot)]) == 0
    assert doc.read_text() == (REPO / "docs" / "ships.md").read_text()
    assert plot.stat().st_size > 10_000 and str(doc) in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["train", "ships", "--report-only", "--out", str(tmp_path / "none")])
    assert e.value.code == 2


@pytest.mark.parametrize("target", ["heads", "ships"])
def test_train_heads_and_ships_take_the_codec_and_record_it(target, monkeypatch):
    """``--model`` picks the codec whose codes a head eats (default: the default codec); a non-default one is
    recorded in the training command the page shows, so the page says how to get that head again."""
    from geocodec.resources import DEFAULT_MODEL

    seen = {}
    module = "geocodec.training.heads" if target == "heads" else "geocodec.training.ships"
    pytest.importorskip("torch")
    import importlib

    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, "run", lambda **kw: seen.update(kw))
    assert _parse("train", target).model == DEFAULT_MODEL
    argv = ["train", target, "--model", "s2-5band-v2", "--out", "geocodec/models/heads/s2-5band-v2",
            "--docs", "/tmp/x.md", "--plot", "/tmp/x.png"] + (["--plot-monitor", "/tmp/m.png"] if target == "heads" else [])
    assert main(argv) == 0
    assert seen["model"] == "s2-5band-v2" and "--model s2-5band-v2" in seen["command"]
    if target == "ships":
        assert str(seen["out"]) == "geocodec/models/heads/s2-5band-v2" and str(seen["doc"]) == "/tmp/x.md"
        assert "--out geocodec/models/heads/s2-5band-v2" in seen["command"]


@pytest.mark.parametrize("target", ["heads", "ships"])
def test_heads_of_another_codec_never_replace_the_shipped_ones(target, monkeypatch, capsys):
    """``--model`` other than the default with an output left at the shipped heads' folder or page is refused,
    naming every such flag, before anything is trained (the default codec's files would carry another encoder)."""
    pytest.importorskip("torch")
    import importlib

    mod = importlib.import_module("geocodec.training.heads" if target == "heads" else "geocodec.training.ships")
    monkeypatch.setattr(mod, "run", lambda **kw: pytest.fail("trained although the outputs are the shipped ones"))
    with pytest.raises(SystemExit) as e:
        main(["train", target, "--model", "s2-5band-v2", "--docs", "/tmp/x.md"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--out (geocodec/models/heads)" in err and "--plot (" in err
    assert "--docs" not in err.split("give ")[1].split(" another")[0]
