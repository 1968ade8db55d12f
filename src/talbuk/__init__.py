"""talbuk: an agent-based model of North Korean society, 1990-2025, and of why people defect.

The public API is small::

    import talbuk
    results = talbuk.Sim(scenario="baseline", scale=10, seed=1).run()
    results.annual  # pandas DataFrame, one row per year, counts in people
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: importing talbuk stays cheap (numba compiles on first use)
    if name == "Sim":
        from talbuk.sim import Sim

        return Sim
    if name == "load_scenario":
        from talbuk.scenario import load_scenario

        return load_scenario
    if name == "Results":
        from talbuk.results import Results

        return Results
    raise AttributeError(name)


__all__ = ["Sim", "load_scenario", "Results", "__version__"]
