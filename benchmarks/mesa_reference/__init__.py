"""A Mesa reference implementation of talbuk's rules, for benchmarks and agreement tests."""

from benchmarks.mesa_reference.model import OUTPUT_KINDS, Household, Person, TalbukMesa

__all__ = ["OUTPUT_KINDS", "Household", "Person", "TalbukMesa"]
