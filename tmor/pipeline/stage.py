"""The contract between a stage and the runner.

A stage turns the samples of one shard into results. It knows nothing about executors, claims,
ledgers or the CLI: the runner reads the plan rows and the upstream payloads of each key, calls
:meth:`Stage.process`, and commits what it yields.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tmor.errors import SampleError


@dataclass
class Sample:
    """One key of a shard, with everything the stage declared in :attr:`Stage.needs`.

    row:     the plan row: key, source, start, end, label, caption, meta (a JSON string), shard
    records: upstream stage name -> that stage's ledger row for this key (status is always "ok")
    members: upstream stage name -> {extension: bytes} read from that stage's tar for this key
    """

    key: str
    row: dict[str, Any]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, bytes]] = field(default_factory=dict)


@dataclass
class Result:
    """What a stage yields for one sample.

    members: extension (e.g. "mp4", "json", "pose.npz") -> payload written as <key>.<extension>
             into the stage's output tar; empty for stages that write only a ledger.
    record:  stage-specific ledger columns (scalars: str, int, float, bool, None).
    flags:   named conditions of a committed sample that are not errors (e.g. "no_person").
    error:   set when the sample failed; members are then ignored.
    """

    key: str
    members: dict[str, bytes] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    error: SampleError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Stage(ABC):
    """A corpus stage. Instances are pickled to workers: keep only configuration in ``__init__``
    and load models in :meth:`setup`, which the runner calls once per worker process."""

    #: output folder under the corpus root, and the stage's name on the command line
    name: ClassVar[str]
    #: upstream stage -> member extensions to load from its tar (empty tuple: its ledger row only).
    #: A key is given to the stage only if it is committed "ok" in every stage named here.
    needs: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: False for stages whose whole output is the ledger (e.g. caption)
    writes_tar: ClassVar[bool] = True

    def setup(self) -> None:
        """Load models and open resources; called once per worker before the first shard."""

    def teardown(self) -> None:
        """Release what :meth:`setup` acquired."""

    @abstractmethod
    def process(self, samples: Iterator[Sample]) -> Iterator[Result]:
        """Yield exactly one :class:`Result` per input sample, in any order.

        Batch across samples freely (pull several from the iterator before yielding). Classify
        failures as :class:`SampleError` in ``Result.error``; an exception escaping this method
        is not about one sample: the runner stops the worker and leaves the shard uncommitted
        (finished keys kept for the rerun)."""

    def card(self) -> dict[str, Any]:
        """Configuration, versions, model ids and hashes recorded in ``corpus.json``."""
        return {}
