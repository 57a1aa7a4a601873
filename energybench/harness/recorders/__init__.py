"""One module per kind of measurement, each ``record(case) -> list[Record]`` over a
:class:`~energybench.harness.case.Case`: speed, footprint, quality, generation, energy, layers."""
