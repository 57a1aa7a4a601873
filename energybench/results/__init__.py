"""Stage 4: what was measured, kept and compared.

``schema`` (Record, Run), ``store`` (the history on disk), ``tables`` (the CSV exports),
``compare`` (deltas, verdicts, the gate), ``history`` (a metric over runs), ``environment``
(machine fingerprint, commit) and ``summary`` (the one-line-per-record table).
"""
