"""The benchmark table: data copied from the mirror with clear errors; cross-key config checks."""

import copy

import pytest
import yaml

from hpl.benchmarks import BENCHMARKS, ConfigError, check_config, prepare_benchmark, training_hparams
from hpl.envs.base import BenchmarkError
from hpl.mirror import ENV_VAR, PROJECT_ROOT, MirrorError


@pytest.mark.parametrize("bench", ["webshop", "intercode_sql"])
def test_data_copied_from_the_mirror(tmp_path, bench, webshop_mirror, intercode_mirror):
    mirror = {"webshop": webshop_mirror, "intercode_sql": intercode_mirror}[bench]
    manifest = BENCHMARKS[bench].prepare(tmp_path / "data", mirror)
    copied = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert manifest["data_dir"] == str(tmp_path / "data") and copied
    assert all((mirror / name).stat().st_size == (tmp_path / "data" / name).stat().st_size for name in copied)


@pytest.mark.parametrize("bench", ["webshop", "intercode_sql"])
def test_missing_data_names_the_file_and_the_setting(tmp_path, bench):
    with pytest.raises(BenchmarkError, match=r"data file missing: .*\(mirror setting `data_mirror`\)"):
        BENCHMARKS[bench].prepare(tmp_path / "data", tmp_path)  # an empty mirror folder
    with pytest.raises(BenchmarkError, match=r"`data_mirror` \(or \$HPL_DATA_MIRROR\)"):
        BENCHMARKS[bench].prepare(tmp_path / "data", None)


@pytest.mark.parametrize("bench", list(BENCHMARKS))
def test_a_configured_mirror_that_is_missing_is_an_error_not_a_download(tmp_path, monkeypatch, bench):
    """The data job itself refuses too (the mirror may vanish after the dry run): no official-source
    fall-back, whose download would silently replace the data the user named."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(MirrorError, match=rf"data mirror {tmp_path}/gone does not exist .*`data_mirror: "):
        prepare_benchmark(bench, tmp_path / "data", str(tmp_path / "gone"))
    assert not (tmp_path / "data").exists()


def _config():
    return yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda c: c["method_specs"]["hpl-semantic"].update(segmenter="llm"),
            r"method_specs.hpl-semantic.segmenter: unknown segmenter 'llm' \(known: fixed_k, fixed_n, semantic, uncertainty\)",
        ),
        (lambda c: c["report"].update(phases="hpl-magic"), r"report.phases: 'hpl-magic'"),
        (lambda c: c["benchmarks"].append("webshop") or c.pop("webshop"), r"no 'webshop' section"),
    ],
)
def test_cross_key_config_errors(mutate, message):
    config = copy.deepcopy(_config())
    check_config(config)  # the embedded default is consistent
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_a_benchmark_sets_its_own_sft_epochs_and_dpo_lr():
    config = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    config["alfworld"]["dpo_lr"] = 3e-6
    shared_epochs = config["training"]["sft"]["epochs"]
    assert (
        training_hparams(config, "webshop", "sft")["epochs"]
        == config["webshop"]["sft_epochs"]
        != shared_epochs
    )
    assert training_hparams(config, "alfworld", "sft")["epochs"] == config["alfworld"]["sft_epochs"]
    config["alfworld"]["sft_epochs"] = None
    assert training_hparams(config, "alfworld", "sft")["epochs"] == shared_epochs  # sft_epochs unset: shared
    assert training_hparams(config, "alfworld", "dpo")["lr"] == 3e-6
    assert training_hparams(config, "webshop", "dpo") == config["training"]["dpo"]  # dpo_lr null
    assert training_hparams(config, "webshop", "sft")["batch_size"] == config["training"]["sft"]["batch_size"]
