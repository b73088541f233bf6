"""The instruction-word lexicon of WebShop searches (`webshop.search_words: instruction`)."""

from __future__ import annotations

import pytest

from hpl.admissible import lexicon_admits
from hpl.envs import make_env
from hpl.webshop.lexicon import InstructionWords, instruction_words

GOAL = (
    "Find me slim fit, loose fit men's tuxedo shirts & tees with color: b-bk2, and size: 3x-large, "
    "and price lower than 40.00 dollars"
)


@pytest.mark.parametrize(
    "query",
    [
        GOAL.lower() + "]",  # the oracle's query
        "find me]",
        "Find ME]",  # words compare in lower case
        "fit fit]",  # "fit" is said twice
        "shirts & tees]",  # up to 3 characters between words
        "price lower than 40.00 dollars]",
        "tees men's find]",  # any order
    ],
)
def test_queries_of_the_instruction_words_close(query):
    assert lexicon_admits(InstructionWords(GOAL), query)


@pytest.mark.parametrize(
    "query",
    [
        "fit fit fit]",  # more often than the instruction says it
        "b-bk2-bk2]",  # the measured loop
        "find  me]",  # the same gap character twice
        "find me, , ]",  # a gap of 4
        "]",  # no word
        "fin]",  # only the start of a word
        "findme]",  # not a word
        "cotton shirts]",  # not in the instruction
        "find me\n]",  # one line
        "find me] more",  # nothing after the close
    ],
)
def test_other_queries_are_refused(query):
    assert not lexicon_admits(InstructionWords(GOAL), query)


def test_a_word_start_may_not_lead_only_to_used_up_words():
    lexicon = InstructionWords("men's shirts for men")
    state = lexicon.extend(lexicon.start(), "men men ")
    assert state is not None
    assert lexicon.extend(state, "m") is None


def test_one_lexicon_per_instruction():
    assert instruction_words(GOAL) is instruction_words(GOAL)


def test_the_environment_lists_a_search_within_the_goal(webshop_mirror):
    env = make_env("webshop", data_dir=webshop_mirror, search_words="instruction")
    env.reset(env.task_ids("test")[0])
    (search,) = env.admissible_actions()
    assert search.prefix == "search[" and search.lexicon is instruction_words(env.goal.instruction_text)
    assert env.admissible_variant == "instruction-word search"
    free = make_env("webshop", data_dir=webshop_mirror)
    free.reset(free.task_ids("test")[0])
    assert free.admissible_actions() == ["search[...]"] and free.admissible_variant == ""


def test_an_unknown_setting_is_named(webshop_mirror):
    with pytest.raises(ValueError, match="webshop.search_words"):
        make_env("webshop", data_dir=webshop_mirror, search_words="any")
