"""Stage 1 of the data flow: which model, from which source, converted to which precision.

``registry`` (the registered models and loading from hub / path / embedded / shape-only),
``embedded`` (the small architectures energybench trains itself), ``precision`` (converters).
"""
