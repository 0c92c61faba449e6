"""Checkpoints on disk and on the Hugging Face Hub, built on huggingface_hub's own cache.

* :mod:`.refs` -- the one checkpoint reference (``default``, a directory, ``hf://org/name@rev``):
  parsing, the pinned-commit rule, resolution to a local directory (offline from the cache).
* :mod:`.download` -- pinned downloads: commit first, sizes from a dry run, safetensors only by default.
* :mod:`.cache` -- list, info, offline verification and delete plans over ``scan_cache_dir``.
* :mod:`.publish` -- a run as a Hub-compatible folder with a model card; push to a Hub or a mirror.
"""
