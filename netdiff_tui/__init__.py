"""NetDiffusion Studio front ends: the ``netdiff`` CLI and the Textual console."""
