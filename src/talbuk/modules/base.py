"""What every model module looks like: a typed parameter model, ``init`` and ``step``.

A module is a small class; its numba kernels live beside it in the same file. The order in
which modules run each month is declared once, in :data:`talbuk.sim.STEP_ORDER`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    from talbuk.sim import Sim


class ModuleParams(BaseModel):
    """Base of every module's parameters: unknown keys are errors, values frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


@dataclass(frozen=True)
class Output:
    """One monthly output column a module records.

    ``kind`` says how months become years: ``flow`` is summed over the year's months,
    ``stock`` takes the value of the year's last simulated month, ``mean`` averages months.
    Counts of people are recorded in people (agents times scale), never in agents.
    """

    name: str
    kind: Literal["flow", "stock", "mean"]
    unit: str
    description: str


class Module:
    """Base class of model modules."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[ModuleParams]] = ModuleParams
    outputs: ClassVar[tuple[Output, ...]] = ()

    def __init__(self, params: ModuleParams):
        self.params = params

    def init(self, sim: Sim) -> None:
        """Prepare module state once, after the population is built (or restored)."""

    def checkpoint_state(self) -> dict:
        """Arrays this module carries from month to month (beyond the person and household
        tables), saved in checkpoints. Modules that keep such state override this."""
        return {}

    def restore_state(self, arrays: dict) -> None:
        """Inverse of :meth:`checkpoint_state`."""

    def step(self, sim: Sim) -> None:
        """Advance one month; ``sim.t`` is the month being simulated."""
        raise NotImplementedError
