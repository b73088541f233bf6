"""The ALFWorld text engine (textworld's PDDL env) made cheap to reset and to restore.

Where the time goes (docs/alfworld.md, ../shared/notes/alfworld-performance.md): a stock reset spends
seconds in the Fast Downward translation of the game's PDDL problem (`fast_downward.pddl2sas`, run twice
per PDDL state and a PDDL state is built on both load and reset) and ~0.24 s parsing the game logic
(`GameLogic`); a step spends ~0.1 s re-deriving the text of every applicable command.

This module keeps the engine's own code paths and replaces only what is pure:

- `TranslationCache`: the translation depends only on (domain, problem), so it is memoized in-process
  (bounded LRU: ~7.6 MB per game) and optionally pickled on disk under a cache folder, keyed by a hash of
  domain + problem + engine versions.
- `CachedPddlEnv`: textworld's `PddlEnv` whose PDDL state is built from the cached translation and whose
  game logic is memoized per (domain, grammar). With `fast_commands`, the text of each applicable command
  is memoized per action and text-relevant arguments within a loaded game (it depends only on static
  facts of the game).
- `FastGrammar` (with `fast_commands`): the engine's text derivation (command texts, a step's feedback, the
  intro) with each grammar string parsed once instead of on every call, and contexts copied one level
  deep instead of deep-copied; the same text.
- `EngineSnapshot` / `capture` / `restore`: a mid-episode state saved and restored without replay through
  the Fast Downward state registry (`get_state_id` / `set_state_id` in the env's own copy of
  `libdownward.so`) plus copies of the Python-side PDDL state fields and of the env's game state.

These reach into textworld internals (`PddlEnv`, `PddlState` fields); the versions they were written and
verified against are `PINNED_VERSIONS`, and tests/test_alfworld.py compares the fast path with the
unmodified engine step by step on games of every type.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import json
import os
import pickle
import re
import sys
import tempfile
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import fast_downward
import textworld
from textworld.core import GameState
from textworld.envs.pddl import PddlEnv, textgen
from textworld.envs.pddl import logic as pddl_logic
from textworld.logic import Proposition, Variable

from hpl.envs.base import BenchmarkError

#: the package versions whose internals this module relies on (checked by `check_versions`)
PINNED_VERSIONS = {"textworld": "1.7.0", "fast-downward-textworld": "20.6.4", "alfworld": "0.4.2"}


class EngineError(BenchmarkError):
    """The engine itself failed (not the agent): the job stops instead of scoring it as an action."""


#: bump when the pickled translation format changes
_CACHE_FORMAT = 1


def installed_versions() -> dict[str, str]:
    versions = {}
    for package in PINNED_VERSIONS:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    return versions


def check_versions() -> list[str]:
    """Warnings for installed versions that differ from the pinned ones ([] when they all match)."""
    return [
        f"{package} {have} installed, the ALFWorld fast path was verified with {PINNED_VERSIONS[package]}"
        for package, have in installed_versions().items()
        if have != PINNED_VERSIONS[package]
    ]


# --- game files -------------------------------------------------------------------------------------
def read_game(path: str | os.PathLike) -> dict[str, Any]:
    """The content of a `game.tw-pddl` file; BenchmarkError naming the file when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"ALFWorld game file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchmarkError(f"ALFWorld game file is corrupt: {path} ({err})") from None
    missing = [
        key
        for key in ("pddl_domain", "pddl_problem", "grammar")
        if not isinstance(data, dict) or key not in data
    ]
    if missing:
        raise BenchmarkError(f"ALFWorld game file is corrupt: {path} (missing {', '.join(missing)})")
    return data


# --- translation cache --------------------------------------------------------------------------------
@dataclass
class Translation:
    """What `fast_downward.pddl2sas` produces for one game: the parsed task and two SAS encodings."""

    task: Any  # fast_downward.translate.pddl.Task (read only once built)
    sas: str  # plain translation: the state the game is played in
    sas_replan: str  # optimized translation, used only by the planner (`PddlState.replan`)


def _translate(domain: str, problem: str) -> Translation:
    # pddl2sas overwrites sys.argv (its option parser reads it): keep the caller's argv intact.
    argv = list(sys.argv)
    try:
        task, sas = fast_downward.pddl2sas(domain, problem)
        _, sas_replan = fast_downward.pddl2sas(domain, problem, optimize=True)
    finally:
        sys.argv[:] = argv
    return Translation(task, sas, sas_replan)


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    hasher.update(json.dumps([_CACHE_FORMAT, installed_versions()], sort_keys=True).encode())
    for part in parts:
        hasher.update(b"\0")
        hasher.update(part.encode())
    return hasher.hexdigest()


class _Lru(OrderedDict):
    """A small bounded mapping: the oldest entry goes when full."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def get_or_make(self, key: str, make: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value


class TranslationCache:
    """Memoizes translations in memory (LRU of `capacity` games) and, with `cache_dir`, on disk.

    The translation is deterministic (same across processes and hash seeds), so the disk cache can be
    shared by every process of the pipeline; files are written atomically (temp file + rename).
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, capacity: int = 32) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._memory = _Lru(capacity)
        self.hits = Counter()  # "memory" / "disk" / "translated"

    def get(self, domain: str, problem: str) -> Translation:
        key = _digest(domain, problem)
        if key in self._memory:
            self.hits["memory"] += 1
        return self._memory.get_or_make(key, lambda: self._load_or_translate(key, domain, problem))

    def _path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.pkl" if self.cache_dir else None

    def _load_or_translate(self, key: str, domain: str, problem: str) -> Translation:
        path = self._path(key)
        if path is not None and path.is_file():
            try:
                with open(path, "rb") as handle:
                    translation = pickle.load(handle)
                self.hits["disk"] += 1
                return translation
            except Exception:  # a torn or foreign file: translate again and overwrite it
                pass
        translation = _translate(domain, problem)
        self.hits["translated"] += 1
        if path is not None:
            self._store(path, translation)
        return translation

    @staticmethod
    def _store(path: Path, translation: Translation) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(translation, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


#: game logic (grammar parse) per (domain, grammar); each game's grammar differs by its task sentence
_LOGIC_CACHE = _Lru(64)


def game_logic(domain: str, grammar: str) -> pddl_logic.GameLogic:
    return _LOGIC_CACHE.get_or_make(
        _digest(domain, grammar), lambda: pddl_logic.GameLogic(domain=domain, grammar=grammar)
    )


#: FastGrammar (its parses) per (domain, grammar), like the logic it derives from
_GRAMMAR_CACHE = _Lru(64)


def fast_grammar(domain: str, grammar: str) -> FastGrammar:
    return _GRAMMAR_CACHE.get_or_make(
        _digest(domain, grammar), lambda: FastGrammar(game_logic(domain, grammar).grammar)
    )


# --- text derivation ---------------------------------------------------------------------------------
class FastGrammar:
    """`ContextSensitiveGrammar.derive` of textworld 1.7.0 without its repeated work, the same text.

    The stock derivation re-parses with tatsu, on every call, the start template, each production rule's
    condition and each conditional symbol's query, all strings fixed by the game's grammar, and it
    deep-copies the context's variables (EntityInfo objects) and mapping for every symbol it expands.
    Here each parse is done once per grammar (the parsed symbols are copied before use, as the stock
    `replace` copies a rule's right-hand side) and contexts are copied one level deep: the derivation
    adds entries to a context's dicts but never changes the objects in them (an EvalSymbol only reads
    attributes). A step's feedback was ~60% tatsu parsing and deep copies (docs/performance.md).
    tests/test_alfworld.py compares every observation and command with the unmodified engine.
    """

    def __init__(self, grammar: Any) -> None:
        self.grammar = grammar
        self._symbols: dict[str, list] = {}
        self._queries: dict[str, Any] = {}

    def derive(self, start: str, context: dict) -> str:
        stack = self._parsed(start)[::-1]
        for symbol in stack:
            symbol.context = _copy_context(context)
        derived = []
        while stack:
            symbol = stack.pop()
            if isinstance(symbol, textgen.TerminalSymbol):
                derived.append(symbol)
            elif isinstance(symbol, textgen.NonterminalSymbol):
                stack += self._replace(symbol)[::-1]
            elif isinstance(symbol, textgen.ConditionalSymbol):
                stack += self._conditional(symbol)[::-1]
            elif isinstance(symbol, textgen.ListSymbol):
                stack += self._list(symbol)[::-1]
            elif isinstance(symbol, textgen.EvalSymbol):
                stack += symbol.derive()[::-1]
            else:
                raise NotImplementedError(f"Unknown symbol: {type(symbol)}")
        return "".join(map(str, derived))

    def _parsed(self, text: str) -> list:
        if text not in self._symbols:
            self._symbols[text] = textgen._parse_and_convert(text, rule_name="symbols")
        return copy.deepcopy(self._symbols[text])

    def _query(self, expression: str) -> Any:
        if expression not in self._queries:
            self._queries[expression] = textworld.logic.Rule.parse_conjunctive_query(expression)
        return self._queries[expression]

    def _replace(self, start: Any) -> list:
        """`ContextSensitiveGrammar.replace`: the first applicable rule's symbols in the start's context."""
        rules = self.grammar._rules.get(str(start))
        if not rules:
            raise textgen.CSGUnknownSymbolError(start)
        state, mapping = start.context["state"], start.context["mapping"]
        applicable = [
            rule
            for rule in rules
            if not rule.condition
            or any(True for _ in state.all_assignments(self._query(rule.condition), mapping))
        ]
        symbols = copy.deepcopy(applicable[0].rhs)
        for symbol in symbols:
            symbol.context = _copy_context(start.context)
        return symbols

    def _conditional(self, symbol: Any) -> list:
        """`ConditionalSymbol.derive`: its expression once per assignment of its query (or once)."""
        if len(symbol.context) == 0:
            raise ValueError("Empty context")
        context = _copy_context(symbol.context)
        contexts = [context]
        if symbol.given:
            contexts = []
            for mapping in context["state"].all_assignments(self._query(symbol.given), context["mapping"]):
                extended = _copy_context(context)
                extended["variables"].update(
                    {ph.name: extended["entity_infos"][var.name] for ph, var in mapping.items()}
                )
                extended["mapping"].update(mapping)
                contexts.append(extended)
        result = []
        for each in contexts:
            copied = copy.deepcopy(symbol.expression)
            copied.context = _copy_context(each)
            result.append(copied)
        return result

    def _list(self, symbol: Any) -> list:
        """`ListSymbol.derive`: the inner symbol's derivation joined by the grammar's list separators."""
        inner = symbol.symbol
        inner.context = symbol.context
        derivation = (
            self._conditional(inner) if isinstance(inner, textgen.ConditionalSymbol) else inner.derive()
        )
        return textgen.display_list(derivation, symbol.context)


def _copy_context(context: dict) -> dict:
    """textgen.copy_context with the variables and mapping copied one level deep (see FastGrammar)."""
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


# --- the engine -------------------------------------------------------------------------------------
class CachedPddlState(pddl_logic.PddlState):
    """textworld's `PddlState`, built from a cached `Translation` instead of translating again.

    The body is `PddlState.__init__` of textworld 1.7.0 with the two `pddl2sas` calls replaced.
    """

    def __init__(
        self, downward_lib: Any, translation: Translation, pddl_problem: str, logic: pddl_logic.GameLogic
    ):
        self._facts = defaultdict(set)
        self._vars_by_name = {}
        self._vars_by_type = defaultdict(set)
        self._var_counts = Counter()
        self._logic = logic
        self.downward_lib = downward_lib
        self.pddl_problem = pddl_problem
        self.task, self.sas, self.sas_replan = translation.task, translation.sas, translation.sas_replan
        self._actions = {a.name: a for a in self.task.actions}

        for type_ in self.task.types:
            try:
                self._logic.types.add(textworld.logic.Type(type_.name, type_.supertype_names))
            except ValueError:
                pass  # already known (the logic is shared by every reset of the game)

        self.downward_lib.load_sas(self.sas.encode("utf-8"))
        self.downward_lib.load_sas_replan(self.sas_replan.encode("utf-8"))
        self.name2type = {o.name: o.type_name for o in self.task.objects}

        self.add_facts(list(filter(None, (self._atom2proposition(atom) for atom in self.task.init))))
        atoms = (pddl_logic.Atom * self.downward_lib.get_state_size())()
        self.downward_lib.get_state(atoms)
        facts = [atom.get_fact(self.name2type) for atom in atoms]
        self.add_facts([fact for fact in facts if not fact.is_negation])

    def _atom2proposition(self, atom: Any) -> Proposition | None:
        if isinstance(atom, fast_downward.translate.pddl.conditions.Atom):
            if atom.predicate == "=":
                return None
            return Proposition(atom.predicate, [Variable(arg, self.name2type[arg]) for arg in atom.args])
        if isinstance(atom, fast_downward.translate.pddl.f_expression.Assign):
            if atom.fluent.symbol == "total-cost":
                return None
            name = f"{atom.expression.value}"
            if str.isdigit(name):  # distance relations
                return None
            return Proposition(name, [Variable(arg, self.name2type[arg]) for arg in atom.fluent.args])
        return None


def _bind_state_registry(lib: Any) -> None:
    """Declare the C signatures of the state-registry calls that `load_lib` leaves undeclared."""
    lib.get_state_id.argtypes = []
    lib.get_state_id.restype = ctypes.c_int
    lib.set_state_id.argtypes = [ctypes.c_int]
    lib.set_state_id.restype = None


class CachedPddlEnv(PddlEnv):
    """textworld's `PddlEnv` with memoized translation and game logic (and, optionally, command text).

    `load`/`reset` follow `PddlEnv.load`/`PddlEnv.reset` of textworld 1.7.0; only where the PDDL state and
    the logic come from differs, so observations, commands and scores are the engine's own.
    """

    def __init__(
        self,
        infos: textworld.EnvInfos | None = None,
        translations: TranslationCache | None = None,
        fast_commands: bool = False,
    ) -> None:
        super().__init__(infos)
        _bind_state_registry(self.downward_lib)
        self.translations = translations or TranslationCache()
        self.fast_commands = fast_commands
        self._command_text: dict[tuple, str] = {}
        self._template_names: dict[str, frozenset[str]] = {}
        #: increases whenever a new PDDL state (a new C-side task and state registry) is built
        self.epoch = 0

    def load(self, path: str | os.PathLike) -> None:
        data = read_game(path)
        self._game_file = str(path)
        self._game_data = data
        self.walkthrough = data.get("walkthrough", None)
        self._logic = game_logic(data["pddl_domain"], data["grammar"])
        # the text derivation: FastGrammar with fast_commands, else the engine's own
        self._grammar = (
            fast_grammar(data["pddl_domain"], data["grammar"]) if self.fast_commands else self._logic.grammar
        )
        self._translation = self.translations.get(data["pddl_domain"], data["pddl_problem"])
        self._command_text, self._template_names = {}, {}
        self._pddl_state = self._new_pddl_state()
        self._entity_infos = self._get_entity_infos()

    def _new_pddl_state(self) -> CachedPddlState:
        self.epoch += 1
        return CachedPddlState(
            self.downward_lib, self._translation, self._game_data["pddl_problem"], self._logic
        )

    def reset(self) -> GameState:
        self._pddl_state = self._new_pddl_state()
        self.prev_state = None
        self.state = GameState()
        self._last_action = None
        self._moves = 0
        context = {
            "state": self._pddl_state,
            "facts": list(self._pddl_state.facts),
            "variables": {},
            "mapping": {},
            "entity_infos": self._entity_infos,
        }
        self.state.feedback = self._grammar.derive("#intro#", context)
        self.state.raw = self.state.feedback
        self._gather_infos()
        if "walkthrough" in self.request_infos.extras:
            self.state["extra.walkthrough"] = self.walkthrough or self._pddl_state.replan(self._entity_infos)
        return self.state

    def step(self, command: str) -> tuple[GameState, int, bool]:
        """`PddlEnv.step` of textworld 1.7.0, except that only a command that is not admissible gets
        "Nothing happens.".

        The stock step wraps the command lookup *and* the engine's work (applying the action, deriving its
        feedback) in one `except ValueError`, so an engine fault on an admissible command would read as an
        invalid action of the agent and be scored as one. Here such a fault raises EngineError.
        """
        command = command.strip()
        self.prev_state = self.state
        self.state = GameState()
        self.state.last_command = command
        self._last_action = None
        valid = self.prev_state["_valid_commands"]
        if command in valid:
            self._last_action = self.prev_state["_valid_actions"][valid.index(command)]
            try:
                self._apply(self._last_action)
            except Exception as err:
                raise EngineError(
                    f"the ALFWorld engine failed on the admissible command {command!r} of "
                    f"{self._game_file}: {type(err).__name__}: {err}"
                ) from err
            self._moves += 1
        else:
            self.state.feedback = "Nothing happens."  # what the stock engine answers an invalid command
        self.state.raw = self.state.feedback
        self._gather_infos()
        if "walkthrough" in self.request_infos.extras:
            self.state["extra.walkthrough"] = self.prev_state["extra.walkthrough"]
        self.state["score"] = 1 if self.state["won"] else 0
        self.state["done"] = self.state["won"] or self.state["lost"]
        return self.state, self.state["score"], self.state["done"]

    def _apply(self, action: Any) -> None:
        """Apply an admissible action and derive the engine's feedback text (the stock step's try body)."""
        self._pddl_state.apply(action)
        context = {
            "state": self._pddl_state,
            "facts": list(self._pddl_state.facts),
            "variables": {ph.name: self._entity_infos[var.name] for ph, var in action.mapping.items()},
            "mapping": action.mapping,
            "entity_infos": self._entity_infos,
        }
        self.state.feedback = self._grammar.derive(action.feedback_rule, context)

    def _gather_infos(self) -> None:
        if not self.fast_commands:
            return super()._gather_infos()
        return self._gather_infos_memoized()

    def _gather_infos_memoized(self) -> None:
        """`PddlEnv._gather_infos` with each command's text derived once per game and text-relevant arguments.

        A command's text comes from its action's template and the values of the placeholders the template
        names; in ALFWorld's grammar the only derived part ("go to [{r.name | receptacleatlocation(r:
        receptacle, lend:location)}]") reads static facts. So the text is memoized per (action, values of the
        placeholders named in its template) within a loaded game: "go to fridge 1" is derived once, whatever
        location the agent comes from. The equivalence test against the stock engine pins this.
        """
        state = self.state
        state["command_templates"] = sorted(set(action.template for action in self._logic.actions.values()))
        state["won"] = self._pddl_state.check_goal()
        state["lost"] = False
        state["_entity_infos"] = dict(self._entity_infos)
        state["_facts"] = list(self._pddl_state.facts)
        if self.request_infos.facts:
            state["facts"] = list(map(self._get_human_readable_fact, state["_facts"]))
        state["last_action"] = None
        state["_last_action"] = self._last_action
        state["_valid_actions"] = list(self._pddl_state.all_applicable_actions())

        mapping = {k: info.name for k, info in self._entity_infos.items()}
        commands = []
        for action in state["_valid_actions"]:
            key = self._command_key(action)
            text = self._command_text.get(key)
            if text is None:
                context = {
                    "state": self._pddl_state,
                    "facts": state["_facts"],
                    "variables": {
                        ph.name: self._entity_infos[var.name] for ph, var in action.mapping.items()
                    },
                    "mapping": action.mapping,
                    "entity_infos": self._entity_infos,
                }
                action.command_template = self._grammar.derive(action.command_template, context)
                text = self._command_text[key] = action.format_command(mapping)
            commands.append(text)
        state["_valid_commands"] = commands
        state["admissible_commands"] = sorted(set(commands))
        if self.request_infos.moves:
            state["moves"] = self._moves
        if self.request_infos.policy_commands:
            state["policy_commands"] = self._pddl_state.replan(self._entity_infos)

    def _command_key(self, action: Any) -> tuple:
        """(action name, values of the placeholders its template mentions): what its text depends on."""
        names = self._template_names.get(action.name)
        if names is None:
            names = self._template_names[action.name] = frozenset(re.findall(r"\w+", action.command_template))
        return (
            action.name,
            tuple(sorted((ph.name, var.name) for ph, var in action.mapping.items() if ph.name in names)),
        )


# --- snapshots --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineSnapshot:
    """A mid-episode engine state: the C registry id plus copies of the Python-side state."""

    pddl_state: Any  # the PddlState it belongs to (restorable only while that one is loaded)
    epoch: int
    state_id: int
    facts: dict
    vars_by_name: dict
    vars_by_type: dict
    var_counts: Counter
    operators: dict | None
    game_state: GameState  # never mutated after a step creates it, so kept by reference
    prev_state: GameState | None
    last_action: Any
    moves: int


def _copy_sets(mapping: dict) -> defaultdict:
    return defaultdict(set, {key: set(values) for key, values in mapping.items()})


def capture(env: CachedPddlEnv) -> EngineSnapshot:
    """Snapshot the engine's current state (0.1 ms; ~30 KB)."""
    pddl_state = env._pddl_state
    return EngineSnapshot(
        pddl_state=pddl_state,
        epoch=env.epoch,
        state_id=env.downward_lib.get_state_id(),
        facts=_copy_sets(pddl_state._facts),
        vars_by_name=dict(pddl_state._vars_by_name),
        vars_by_type=_copy_sets(pddl_state._vars_by_type),
        var_counts=Counter(pddl_state._var_counts),
        operators=getattr(pddl_state, "_operators", None),
        game_state=env.state,
        prev_state=env.prev_state,
        last_action=env._last_action,
        moves=env._moves,
    )


def can_restore(env: CachedPddlEnv, snapshot: EngineSnapshot) -> bool:
    """True while the snapshot's problem is still the one loaded (no new PDDL state built since)."""
    return snapshot.pddl_state is getattr(env, "_pddl_state", None) and snapshot.epoch == env.epoch


def restore(env: CachedPddlEnv, snapshot: EngineSnapshot) -> None:
    """Put the engine back into a captured state (0.2 ms). The snapshot stays reusable."""
    if not can_restore(env, snapshot):
        raise ValueError("engine snapshot belongs to a PDDL state that is no longer loaded")
    env.downward_lib.set_state_id(snapshot.state_id)
    pddl_state = env._pddl_state
    pddl_state._facts = _copy_sets(snapshot.facts)
    pddl_state._vars_by_name = dict(snapshot.vars_by_name)
    pddl_state._vars_by_type = _copy_sets(snapshot.vars_by_type)
    pddl_state._var_counts = Counter(snapshot.var_counts)
    if snapshot.operators is not None:
        pddl_state._operators = snapshot.operators
    env.state = snapshot.game_state
    env.prev_state = snapshot.prev_state
    env._last_action = snapshot.last_action
    env._moves = snapshot.moves
