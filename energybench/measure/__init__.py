"""Stage 2: what a benchmark measures on a prepared model.

``workloads`` (inputs and timed forward calls), ``footprint`` (peak memory, serialized size),
``quality`` (accuracy, perplexity), ``energy`` (the metered window) and ``meters`` (the sensors).
"""
