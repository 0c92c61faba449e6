"""NetDiffusion Studio headless engine: codec, flows, repair, models, recipes.

Nothing in this package imports Textual; the TUI in ``netdiff_tui`` is a view
over it.
"""

__version__ = "0.1.0"
