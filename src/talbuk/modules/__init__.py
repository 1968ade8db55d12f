"""Model modules. :data:`MODULE_CLASSES` maps each module's name to its class.

The order they run in each month is declared in :data:`talbuk.sim.STEP_ORDER`, not here.
"""

from __future__ import annotations

from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.modules.demography import Demography

MODULE_CLASSES: dict[str, type[Module]] = {
    cls.name: cls
    for cls in (Demography,)
}

__all__ = ["MODULE_CLASSES", "Module", "ModuleParams", "Output"]
