"""The curriculum: the nine built-in domains of the original, topics added at run time, and the
relation map that meta's transfer efficiency spreads skill gains along.

Pure data and helpers; the Redis copy (so every replica sees added topics) is kept by
`curriculum_store.CurriculumStore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DIFFICULTIES = ("easy", "medium", "hard")


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    topic: str  # sub-topic label
    difficulty: str
    problem: str
    keywords: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "difficulty": self.difficulty,
            "problem": self.problem,
            "keywords": list(self.keywords),
        }


@dataclass(frozen=True, slots=True)
class Topic:
    key: str
    name: str
    problems: tuple[Problem, ...]
    background: bool = False
    order: int = 0
    # Problem index per difficulty, nearest available when a tier is missing; computed once so the
    # round loop does no searching.
    by_difficulty: dict[str, Problem] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "problems": [p.to_dict() for p in self.problems],
            "background": self.background,
            "order": self.order,
        }


def make_topic(
    key: str, name: str, problems: list[dict[str, Any]], background: bool, order: int
) -> Topic:
    if not problems:
        # The original let a topic with no problems block selection forever (§7 item 12); here such
        # a topic cannot be built at all.
        raise ValueError(f"topic {key!r} needs at least one problem")
    built = tuple(
        Problem(
            id=str(p.get("id") or f"{key}_{i + 1:03d}"),
            topic=str(p.get("topic") or name),
            difficulty=str(p.get("difficulty") or DIFFICULTIES[min(i, 2)]),
            problem=str(p["problem"]),
            keywords=tuple(str(k) for k in p["keywords"]),
        )
        for i, p in enumerate(problems)
    )
    for p in built:
        if not p.keywords:
            raise ValueError(f"problem {p.id!r} needs at least one keyword")
    tiers: dict[str, Problem] = {}
    for rank, difficulty in enumerate(DIFFICULTIES):
        exact = [p for p in built if p.difficulty == difficulty]
        if exact:
            tiers[difficulty] = exact[0]
            continue
        # nearest tier by rank distance, preferring the easier one on a tie
        tiers[difficulty] = min(
            built,
            key=lambda p: (
                abs(DIFFICULTIES.index(p.difficulty) - rank),
                DIFFICULTIES.index(p.difficulty),
            ),
        )
    return Topic(key, name, built, background, order, tiers)


def topic_from_dict(key: str, doc: dict[str, Any]) -> Topic:
    return make_topic(
        key, doc["name"], doc["problems"], bool(doc.get("background")), int(doc.get("order", 0))
    )


def _p(pid: str, topic: str, difficulty: str, problem: str, *keywords: str) -> dict[str, Any]:
    return {
        "id": pid,
        "topic": topic,
        "difficulty": difficulty,
        "problem": problem,
        "keywords": list(keywords),
    }


# The original's nine domains in its fixed order (order breaks ties in selection). Keyword counts of
# the _001 problems match the reference (dsa 3, os 3, networks 4, compilers 3, databases 3, ml 3,
# security 3, theory 3, distributed 4); _002/_003 are the medium and hard tiers the original never
# reached.
BUILTIN: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("dsa", "Data Structures & Algorithms", [
        _p("dsa_001", "Arrays", "easy", "Find two numbers in an array that add up to a target.", "hash", "map", "complement"),
        _p("dsa_002", "Graphs", "medium", "Find the shortest path in a weighted graph.", "dijkstra", "priority", "queue", "relax"),
        _p("dsa_003", "Dynamic Programming", "hard", "Compute the longest increasing subsequence in O(n log n).", "binary", "search", "patience", "tails", "subsequence"),
    ]),
    ("os", "Operating Systems", [
        _p("os_001", "Processes", "easy", "What is the difference between a process and a thread?", "address", "space", "shared"),
        _p("os_002", "Scheduling", "medium", "Explain how a round-robin scheduler avoids starvation.", "quantum", "preemption", "ready", "queue"),
        _p("os_003", "Memory", "hard", "Explain how a TLB miss is handled with multi-level page tables.", "page", "table", "walk", "tlb", "fault"),
    ]),
    ("networks", "Computer Networks", [
        _p("net_001", "DNS", "easy", "How does a DNS lookup resolve a hostname?", "dns", "root", "tld", "authoritative"),
        _p("net_002", "TCP", "medium", "Describe the TCP three-way handshake and why it is needed.", "syn", "ack", "sequence", "tcp"),
        _p("net_003", "Congestion", "hard", "Explain TCP congestion control and fast recovery.", "window", "slow", "start", "congestion", "retransmit"),
    ]),
    ("compilers", "Compilers", [
        _p("comp_001", "Lexing", "easy", "What does a lexer produce from source text?", "token", "lexeme", "regular"),
        _p("comp_002", "Parsing", "medium", "How does an LR parser decide between shift and reduce?", "shift", "reduce", "lookahead", "table"),
        _p("comp_003", "Optimisation", "hard", "Explain SSA form and why it simplifies optimisation.", "ssa", "phi", "dominator", "def", "use"),
    ]),
    ("databases", "Databases", [
        _p("db_001", "Indexes", "easy", "Why does an index speed up a query?", "btree", "lookup", "scan"),
        _p("db_002", "Transactions", "medium", "Explain the ACID properties of a transaction.", "atomicity", "consistency", "isolation", "durability"),
        _p("db_003", "Concurrency", "hard", "How does MVCC provide snapshot isolation?", "version", "snapshot", "visibility", "vacuum", "write"),
    ]),
    ("ml", "Machine Learning", [
        _p("ml_001", "Basics", "easy", "What is overfitting and how do you detect it?", "validation", "variance", "generalization"),
        _p("ml_002", "Optimisation", "medium", "Explain gradient descent and the role of the learning rate.", "gradient", "loss", "learning", "rate"),
        _p("ml_003", "Regularisation", "hard", "Compare L1 and L2 regularisation and their effect on weights.", "sparsity", "penalty", "lasso", "ridge", "weights"),
    ]),
    ("security", "Security", [
        _p("sec_001", "Web", "easy", "How does SQL injection work and how is it prevented?", "parameterized", "query", "escape"),
        _p("sec_002", "Crypto", "medium", "Why should passwords be hashed with a salt?", "salt", "hash", "rainbow", "table"),
        _p("sec_003", "Protocols", "hard", "Explain how TLS establishes a shared key with forward secrecy.", "handshake", "ephemeral", "diffie", "hellman", "certificate"),
    ]),
    ("theory", "Theory", [
        _p("theory_001", "Complexity", "easy", "What does it mean for a problem to be NP-complete?", "np", "reduction", "polynomial"),
        _p("theory_002", "Automata", "medium", "Why can a finite automaton not recognise balanced parentheses?", "pumping", "lemma", "regular", "stack"),
        _p("theory_003", "Computability", "hard", "Prove that the halting problem is undecidable.", "diagonal", "contradiction", "turing", "machine", "halts"),
    ]),
    ("distributed", "Distributed Systems", [
        _p("dist_001", "Consistency", "easy", "What does the CAP theorem state?", "consistency", "availability", "partition", "tolerance"),
        _p("dist_002", "Consensus", "medium", "How does Raft elect a leader?", "term", "vote", "majority", "heartbeat"),
        _p("dist_003", "Clocks", "hard", "How do vector clocks detect concurrent updates?", "vector", "clock", "causal", "concurrent", "merge"),
    ]),
]  # fmt: skip

BUILTIN_KEYS = tuple(key for key, _, _ in BUILTIN)

# Which domains share enough ideas that practising one helps the other (meta's transfer efficiency
# spreads `state.transfer` of a skill gain along these edges). Symmetric by construction below.
_RELATED_EDGES = [
    ("dsa", "theory"),
    ("dsa", "compilers"),
    ("os", "networks"),
    ("os", "distributed"),
    ("networks", "security"),
    ("networks", "distributed"),
    ("databases", "distributed"),
    ("ml", "dsa"),
    ("theory", "compilers"),
    ("security", "os"),
]
RELATED: dict[str, tuple[str, ...]] = {}
for _a, _b in _RELATED_EDGES:
    RELATED[_a] = (*RELATED.get(_a, ()), _b)
    RELATED[_b] = (*RELATED.get(_b, ()), _a)


def builtin_topics() -> list[Topic]:
    return [
        make_topic(key, name, problems, False, i) for i, (key, name, problems) in enumerate(BUILTIN)
    ]


@dataclass(frozen=True, slots=True)
class Curriculum:
    """An immutable snapshot of the topics in selection order (built-ins first, then additions)."""

    topics: tuple[Topic, ...]
    version: int = 0
    by_key: dict[str, Topic] = field(default_factory=dict, compare=False)
    keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, topics: list[Topic], version: int = 0) -> Curriculum:
        ordered = tuple(sorted(topics, key=lambda t: (t.order, t.key)))
        return cls(ordered, version, {t.key: t for t in ordered}, tuple(t.key for t in ordered))

    def get(self, key: str) -> Topic | None:
        return self.by_key.get(key)


def default_curriculum() -> Curriculum:
    return Curriculum.of(builtin_topics())
