"""`promptbox eval` exit codes and messages, and Locator.with_mode (without loading any model)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import pytest

from promptbox.cli import main as promptbox_main
from promptbox.config import LocatorConfig
from promptbox.evaluation.cli import main
from promptbox.locator import Locator


def test_a_missing_dataset_folder_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-set"
    assert main([str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert promptbox_main(["eval", str(missing)]) == 2  # through the top-level dispatcher too


def test_a_bad_mode_exits_2_before_any_model_is_loaded(tmp_path, capsys):
    def refuse(config):
        raise AssertionError("no locator should be made")

    assert main([str(tmp_path), "--mode", "exact,slow"], make_locator=refuse) == 2
    assert "mode 'slow' is not supported" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    assert main(["convert-coco", "only-one"]) == 2
    assert main(["convert-coco", "nope.json", "nowhere", "out"]) == 2
    assert "nope.json: no such file" in capsys.readouterr().err


def test_with_mode_shares_the_loaded_parts():
    base = Locator.__new__(Locator)  # no models: only the attributes with_mode must carry over
    base.config = LocatorConfig()
    base.proposer, base.matcher, base._background = object(), object(), object()
    base._frames, base._lock, base.random_weights = OrderedDict(), threading.RLock(), False
    fast = base.with_mode("fast")
    assert fast.config.mode == "fast" and base.config.mode == "exact"
    assert fast.config.amg == base.config.amg
    for name in ("proposer", "matcher", "_background", "_frames", "_lock"):
        assert getattr(fast, name) is getattr(base, name)
    with pytest.raises(ValueError, match="mode='slow' is not supported"):
        base.with_mode("slow")


def test_fast_map_options_reach_the_config():
    from promptbox.evaluation.cli import _config, _eval_parser

    default = _config(_eval_parser().parse_args(["somewhere"]), "fast")
    assert (default.fast_map, default.map_window) == ("auto", 0.2)
    args = _eval_parser().parse_args(["somewhere", "--fast-map", "windows", "--map-window", "0.3"])
    assert (_config(args, "fast").fast_map, _config(args, "fast").map_window) == ("windows", 0.3)
