"""Model modules. :data:`MODULE_CLASSES` maps each module's name to its class.

The order they run in each month is declared in :data:`talbuk.sim.STEP_ORDER`, not here.
"""

from __future__ import annotations

from talbuk.modules.attitudes import Attitudes
from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.modules.decision import Decision
from talbuk.modules.demography import Demography
from talbuk.modules.economy import Economy
from talbuk.modules.information import Information
from talbuk.modules.journey import Journey, LeftBehind

MODULE_CLASSES: dict[str, type[Module]] = {
    cls.name: cls
    for cls in (Demography, Economy, Journey, LeftBehind, Information, Attitudes, Decision)
}

__all__ = ["MODULE_CLASSES", "Module", "ModuleParams", "Output"]
