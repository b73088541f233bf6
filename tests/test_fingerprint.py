"""Code fingerprints (hpl.fingerprint) and result settings (hpl.settings): what makes a job rerun."""

import shutil
from pathlib import Path

import yaml

from hpl.benchmarks import BENCHMARKS
from hpl.fingerprint import dependencies, fingerprint
from hpl.mirror import PROJECT_ROOT
from hpl.segmenters import MODULES, SEGMENTERS
from hpl.settings import (
    RUNTIME,
    EpisodeSettings,
    ExpertSettings,
    GenerationSettings,
    NegativeSettings,
    RolloutSettings,
    explored_tasks,
    params,
    reference_seed,
    runtime,
)

HPL = PROJECT_ROOT / "hpl"
SCRIPTS = PROJECT_ROOT / "scripts"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "hpl"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _names(paths, root: Path) -> set[str]:
    return {str(p.relative_to(root.parent)) for p in paths}


def test_closure_follows_function_local_imports_submodules_and_entry_points(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "import os\n\ndef f():\n    from hpl.b import g\n    return g\n",
            "b.py": "from hpl.pkg import sub\nTASK = 'hpl.c:train'\n",
            "c.py": "",
            "pkg/__init__.py": "",
            "pkg/sub.py": "",
            "unused.py": "",
        },
    )
    found = _names(dependencies([root / "a.py"], root), root)
    assert found == {
        "hpl/a.py",
        "hpl/__init__.py",
        "hpl/b.py",
        "hpl/c.py",
        "hpl/pkg/__init__.py",
        "hpl/pkg/sub.py",
    }
    before = fingerprint([root / "a.py"], root)
    (root / "unused.py").write_text("x = 1\n")  # imported by nobody: the fingerprint stays
    assert fingerprint([root / "a.py"], root) == before
    (root / "pkg/sub.py").write_text("x = 1\n")  # reached through `from hpl.pkg import sub`
    assert fingerprint([root / "a.py"], root) != before


def test_family_members_other_than_the_jobs_own_are_not_entered(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "registry.py": "def load(name):\n    import hpl.red.engine\n    import hpl.blue.engine\n",
            "red/__init__.py": "",
            "red/engine.py": "import hpl.shared\n",
            "blue/__init__.py": "",
            "blue/engine.py": "",
            "shared.py": "",
        },
    )
    entry = [root / "registry.py"]
    red = _names(dependencies(entry, root, own=["red/*.py"], others=["blue/*.py"]), root)
    assert "hpl/red/engine.py" in red and "hpl/shared.py" in red
    assert not any(name.startswith("hpl/blue") for name in red)
    before = fingerprint(entry, root, own=["red/*.py"], others=["blue/*.py"])
    (root / "blue/engine.py").write_text("x = 1\n")
    assert fingerprint(entry, root, own=["red/*.py"], others=["blue/*.py"]) == before


def _bench_fingerprint(script: str, bench: str, root: Path) -> str:
    own = BENCHMARKS[bench].code
    others = [g for name, spec in BENCHMARKS.items() if name != bench for g in spec.code]
    return fingerprint([root.parent / "scripts" / script], root, own, others)


def test_a_benchmark_modules_edit_changes_only_that_benchmarks_jobs(tmp_path):
    copy = tmp_path / "workflow"
    shutil.copytree(HPL, copy / "hpl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SCRIPTS, copy / "scripts")
    root = copy / "hpl"
    before = {b: _bench_fingerprint("evaluate.py", b, root) for b in BENCHMARKS}
    with open(root / "webshop/reward.py", "a") as handle:
        handle.write("\n# a change\n")
    after = {b: _bench_fingerprint("evaluate.py", b, root) for b in BENCHMARKS}
    assert after["webshop"] != before["webshop"]
    assert after["alfworld"] == before["alfworld"] and after["intercode_sql"] == before["intercode_sql"]


def test_real_rules_see_the_modules_their_imports_reach():
    def deps(script: str) -> set[str]:
        return _names(dependencies([SCRIPTS / script], HPL), HPL)

    # the training function is named as a string for hpl.launch: followed, and only the one named
    assert "hpl/sft.py" in deps("train_sft.py") and "hpl/dpo.py" not in deps("train_sft.py")
    assert {"hpl/dpo.py", "hpl/pairs.py"} <= deps("train_dpo.py")
    # the hand-written lists missed these (issue 15): pairs.py builds the rollout states, models.py loads pi_ref
    for script in ("step_rollouts.py", "group_rollouts.py"):
        assert {"hpl/pairs.py", "hpl/models.py", "hpl/rollouts.py"} <= deps(script)
    assert {"hpl/models.py", "hpl/trajectory.py", "hpl/policy.py"} <= deps("explore.py")
    # the trainer shares nothing with generation's batching
    assert "hpl/pairs.py" not in deps("explore.py") and "hpl/prefix_cache.py" not in deps("train_sft.py")


def test_every_segmenter_kind_names_its_own_module():
    assert set(MODULES) == set(SEGMENTERS)
    for module in MODULES.values():
        assert (HPL / module).is_file()


def _config() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "config/config.yaml").read_text())


def _all_params(config: dict) -> dict:
    return {
        bench: {
            "episodes": params(EpisodeSettings.from_config(config, bench)),
            "expert": params(ExpertSettings.from_config(config, bench)),
            "generation": params(GenerationSettings.from_config(config, bench)),
            "rollouts": params(RolloutSettings.from_config(config, bench)),
            "negatives": params(NegativeSettings.from_config(config)),
        }
        for bench in BENCHMARKS
    }


def test_runtime_settings_never_reach_params():
    config = _config()
    before = _all_params(config)
    config["exploration"]["lanes"] = 3
    config["generation"].update(parallel_episodes=2, prefix_cache=False, lookahead=5, shards=4)
    config["intercode_sql"]["server"] = {
        "host": "db.example",
        "port": 3307,
        "user": "u",
        "password": "secret",
    }
    config["alfworld"]["dpo_lr"] = 1e-5  # a training key: no generation or data stage reads it
    config["webshop"]["sft_epochs"] = 9
    assert _all_params(config) == before
    assert runtime(config, "intercode_sql")["server"]["password"] == "secret"
    assert set(runtime(config, "generation")) == set(RUNTIME["generation"])


def test_result_settings_hold_what_changes_a_result():
    config = _config()
    sql = EpisodeSettings.from_config(config, "intercode_sql")
    assert sql.options == {"reward": "intercode", "split": "database", "truncation_reward": "zero"}
    assert EpisodeSettings.from_config(config, "alfworld") == EpisodeSettings(30, {})
    # one action mode per benchmark: admissible on all three in the embedded default, each settable alone
    assert {GenerationSettings.from_config(config, b).actions for b in config["benchmarks"]} == {"admissible"}
    modes = {**config["generation"]["actions"], "intercode_sql": "free"}
    free_sql = {**config, "generation": {**config["generation"], "actions": modes}}
    assert GenerationSettings.from_config(free_sql, "intercode_sql").actions == "free"
    assert GenerationSettings.from_config(free_sql, "webshop").actions == "admissible"
    before = _all_params(config)
    config["intercode_sql"]["split"] = "paper"
    config["generation"]["reply_margin"] = 8
    after = _all_params(config)
    assert after["intercode_sql"]["episodes"] != before["intercode_sql"]["episodes"]
    assert after["alfworld"]["episodes"] == before["alfworld"]["episodes"]
    assert all(after[b]["generation"] != before[b]["generation"] for b in BENCHMARKS)
    # a rule's settings are rebuilt from its params in the script (nested settings included)
    expert = ExpertSettings.from_config(config, "intercode_sql")
    rebuilt = ExpertSettings(**params(expert))
    assert rebuilt == expert and rebuilt.section(config, "intercode_sql")["split"] == "paper"
    assert rebuilt.section(config, "intercode_sql")["server"] == config["intercode_sql"]["server"]


def test_a_benchmarks_explore_tasks_override_the_shared_count_for_it_alone():
    config = _config()
    config["exploration"]["tasks"] = 24
    assert all(explored_tasks(config, bench) == 24 for bench in BENCHMARKS)  # explore_tasks unset: shared
    before = _all_params(config)
    config["webshop"]["explore_tasks"] = 200
    after = _all_params(config)
    assert RolloutSettings(**after["webshop"]["rollouts"]).tasks == explored_tasks(config, "webshop") == 200
    assert all(after[b] == before[b] for b in BENCHMARKS if b != "webshop")
    config["webshop"]["explore_tasks"] = None  # null: exploration.tasks again
    assert _all_params(config) == before


def test_reference_seed_each_gives_every_seed_its_own_pi_ref_and_a_number_one_for_all():
    config = _config()
    assert config["reference_seed"] == "each"  # the embedded default: seeds replicate the whole pipeline
    assert [reference_seed(config, s) for s in (0, 1, "2")] == [0, 1, 2]  # wildcards are strings
    config["reference_seed"] = 1
    assert [reference_seed(config, s) for s in (0, 1, "2")] == [1, 1, 1]
