"""Evaluation of synthetic traffic against real traffic (``netdiff evaluate``).

Modules: :mod:`.metrics` (JSD, TVD, Hellinger, binning), :mod:`.data` (reading
labeled directories, the real split), :mod:`.features` (what is compared and
what classifiers see), :mod:`.fidelity`, :mod:`.utility` (classifiers),
:mod:`.baselines` (random bits and per-field marginals, both repaired),
:mod:`.report` (JSON, Markdown, PNG), :mod:`.run` (the whole run).
See docs/evaluation.md.
"""

from .run import EvalOptions, evaluate

__all__ = ["EvalOptions", "evaluate"]
