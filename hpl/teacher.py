"""Expert data from a teacher LLM (`expert_source: teacher`), as the paper made D_e with GPT-4o.

The teacher plays the training tasks through an OpenAI-compatible endpoint (`hpl.endpoint.EndpointPolicy`:
ReAct prompting with the environment's own instruction and first observation, concurrent requests, the
on-disk cache, retries). Each finished episode is a trajectory in the conversation schema; it is kept when
its outcome reward reaches the benchmark's threshold (REFERENCE.md section 1: 1.0 on ALFWorld and
InterCode-SQL, 0.8 on WebShop). `collect_teacher` returns the data card: teacher model, prompt source,
success rate, kept/attempted, and the LLM calls and tokens (also written beside the expert file as the
usage JSON that Table 5 reads).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hpl.endpoint import EndpointPolicy
from hpl.envs.base import Environment
from hpl.episodes import Episode, play
from hpl.trajectory import validate_trajectory

log = logging.getLogger(__name__)

#: outcome reward a teacher (or imported) trajectory must reach to be kept (REFERENCE.md section 1)
KEEP_THRESHOLD = {"alfworld": 1.0, "webshop": 0.8, "intercode_sql": 1.0}
PROMPT_SOURCE = (
    "the environment's own opening turns (instruction with action space and format rules from "
    "hpl/envs/{bench}.py INSTRUCTION, 'OK', first observation with the task), then ReAct turns "
    "'Thought: ...\\nAction: ...' answered by 'Observation: ...'; each reply cut after its first action line"
)


def keep_threshold(bench: str) -> float:
    try:
        return KEEP_THRESHOLD[bench]
    except KeyError:
        raise ValueError(f"no expert reward threshold for benchmark {bench!r}") from None


def teacher_record(episode: Episode, model: str) -> dict[str, Any]:
    """A finished teacher episode as an expert trajectory (conversation schema plus task metadata)."""
    record = episode.record()
    record.update(source="teacher", teacher=model, n_actions=episode.turns)
    validate_trajectory(record)
    return record


def collect_teacher(
    bench: str,
    make_env: Callable[[], Environment],
    task_ids: Sequence[str],
    policy: EndpointPolicy,
    *,
    model: str,
    max_turns: int,
    temperature: float = 0.0,
    on_record: Callable[[dict], None] | None = None,
    threshold: float | None = None,
    progress: str | None = None,
) -> tuple[list[dict], dict[str, Any]]:
    """Play `task_ids` with the teacher; return (kept trajectories, data card).

    `on_record` gets each kept trajectory as its episode ends (a resumable log); rejected ones are only
    counted: a rerun plays them again from the cache at no cost.
    """
    threshold = keep_threshold(bench) if threshold is None else threshold
    kept: list[dict] = []
    rewards: list[float] = []
    turns: list[int] = []
    invalid = 0
    outcome: Counter = Counter()

    def finish(episode: Episode) -> None:
        nonlocal invalid
        record = teacher_record(episode, model)
        rewards.append(record["reward"])
        turns.append(record["turns"])
        invalid += record["invalid_actions"]
        if record["reward"] >= threshold:
            outcome["kept"] += 1
            kept.append(record)
            if on_record is not None:
                on_record(record)
        else:
            outcome["turn limit" if episode.turns >= max_turns else "below threshold"] += 1

    started = time.perf_counter()
    play(
        make_env,
        policy,
        list(task_ids),
        parallel=policy.max_concurrency,
        temperature=temperature,
        max_turns=max_turns,
        on_finish=finish,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    n = len(rewards)
    usage = policy.usage.as_dict()
    card = {
        "benchmark": bench,
        "source": "teacher",
        "teacher": {
            "model": model,
            "temperature": temperature,
            "max_tokens": policy.max_tokens,
            "max_concurrency": policy.max_concurrency,
        },
        "prompt": PROMPT_SOURCE.format(bench=bench),
        "keep_threshold": threshold,
        "max_turns": max_turns,
        "attempted": n,
        "kept": len(kept),
        "kept_rate": len(kept) / n if n else 0.0,
        "success_rate": sum(r >= 1.0 for r in rewards) / n if n else 0.0,
        "mean_reward": sum(rewards) / n if n else 0.0,
        "mean_turns": sum(turns) / n if n else 0.0,
        "invalid_actions": invalid,
        "rejected": {k: v for k, v in outcome.items() if k != "kept"},
        "llm": {
            "calls": usage["calls"],
            "cache_hits": usage["cache_hits"],
            "requests": usage["requests"],
            "prompt_tokens": usage["prompt_tokens"] + usage["cached_prompt_tokens"],
            "completion_tokens": usage["completion_tokens"] + usage["cached_completion_tokens"],
            "fresh_prompt_tokens": usage["prompt_tokens"],
            "fresh_completion_tokens": usage["completion_tokens"],
            "call_seconds": round(usage["seconds"], 2),
        },
        "seconds": round(seconds, 2),
    }
    log.info(
        "teacher %s on %s: %d/%d kept (success %.1f%%), %d calls, %d cache hits",
        model,
        bench,
        len(kept),
        n,
        100 * card["success_rate"],
        usage["calls"],
        usage["cache_hits"],
    )
    return kept, card
