"""Stage 3 of the pipeline: labeled datasets in and out.

* :mod:`.encoded`  -- encoded flow files and their ``manifest.csv`` on disk.
* :mod:`.encode`   -- captures -> an encoded dataset (``netdiff encode``).
* :mod:`.request`  -- the generation request.
* :mod:`.recipes`  -- TOML recipes and shipped presets.
* :mod:`.generate` -- sample -> repair -> labeled pcaps (``netdiff generate``).
* :mod:`.export`   -- labeled datasets, splits, pcapng, data card.
* :mod:`.balance`  -- top up thin classes with synthetic flows.
"""
