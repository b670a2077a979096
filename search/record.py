"""The search record: what a search did and found, typed. Every strategy fills the same record; the
driver adds what it measured around them; search.json is its JSON, the report and the CLI read it.

A leaf here is a flat dict of numbers (space.LEAF_KEYS, from a one-shot estimate or a fine-tuned
trial): `drop` and the NPU numbers, plus where it came from (`epochs`, `tflite_uri`, ...).
"""
import dataclasses
import json

STOPPED = ("met", "budget", "wall time", "exhausted")
KEEP_RATIO = "thin_keep_ratio"  # a thinned trial's leaf: the fraction of the thinnable channels it kept


@dataclasses.dataclass
class Round:
    """One round of trials: their fine-tuning epochs, ids, what it cost, their leaves."""
    epochs: int
    ids: list
    cost_epochs: int
    leaves: dict
    screen: bool = False  # a screening round (prefix, auto): one-stage leaves of each first stage


@dataclasses.dataclass
class Record:
    strategy: str
    considered: int  # candidates in the space
    feasible_by_estimate: int  # within the resource requirements by one-shot estimate
    rounds: list = dataclasses.field(default_factory=list)  # of Round
    epochs_spent: int = 0  # fine-tuning epochs planned (a node trained before is not counted again)
    chosen: str = None  # the answer's candidate id
    leaf: dict = None  # the answer's numbers
    stopped: str = "exhausted"  # one of STOPPED
    then: str = None  # auto: what it went on with after screening ("groups" or "halving")
    best_so_far: dict = None  # no answer, or a stop before one: {"best": {objective: (id, value)}, "misses"}
    # what the driver (search/driver.py) measured around the strategy
    eval_metric: str = "accuracy"
    requirements: dict = dataclasses.field(default_factory=dict)
    npu_target: str = None
    executions: list = dataclasses.field(default_factory=list)  # per round: its run id and fine-tuning nodes
    epochs_executed: int = 0  # fine-tuning epochs the nodes executed (not CACHED)
    wall_time_s: float = 0.0
    reference: dict = None  # the ptq leaf every drop is measured against (its NPU time: what a latency limit is in)
    base: dict = None  # the unchanged model's one-shot numbers
    estimates: dict = dataclasses.field(default_factory=dict)  # candidate id -> one-shot estimate
    sensitivity: list = dataclasses.field(default_factory=list)  # the per-layer sensitivity table
    schedules: list = dataclasses.field(default_factory=list)  # the per-layer schedules built from it
    failed: dict = dataclasses.field(default_factory=dict)  # candidate id -> why it could not be estimated
    thin_keep_ratios: list = None  # the space's: search.thin_keep_ratios, or fitted to the latency limit

    def add_round(self, epochs, batch, cost, leaves, screen=False):
        self.epochs_spent += cost
        self.rounds.append(Round(epochs, [c.id for c in batch], cost, {c.id: leaves[c.id] for c in batch}, screen))

    def leaves(self):
        """{id: leaf} of the last round each candidate reached."""
        return {cid: leaf for rnd in self.rounds for cid, leaf in rnd.leaves.items()}

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc):
        doc = dict(doc)
        doc["rounds"] = [Round(**r) for r in doc.get("rounds", [])]
        return cls(**doc)

    def dump(self, path):
        from collabopt.core.artifact_files import write_json
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(json.load(f))
