"""The paper's route: Stable Diffusion fine-tuned with LoRA on flow images, sampled
(optionally with a ControlNet fed by canny edges of real flows), then repaired.

- :mod:`.grid` -- flows <-> padded RGB images on the exact bit grid
- :mod:`.pipeline` -- base pipelines: references, families (SD 1.5 UNet, SD3), prompts
- :mod:`.train` -- LoRA fine-tuning (``netdiff train --model-type sd``)
- :mod:`.sample` -- text-to-image, img2img and ControlNet sampling into flow matrices
- :mod:`.canny` -- the ControlNet's edge maps
- :mod:`.state` -- optimizer state in safetensors + JSON
- :mod:`.build` -- random-initialised pipelines from configs (benchmarks, tests)

Everything here needs the ``sd`` extra (transformers, peft).
"""


def require_libraries() -> None:
    """Stop an SD command with one line (InputError, exit status 2) when the ``sd`` extra's
    libraries are missing: a Python install without the extra, or the lean lab bundle
    (build.spec leaves them out unless NETDIFF_BUNDLE_SD=1). Without this the first import
    of transformers or peft deep inside a command would end in a traceback."""
    import sys

    from engine.errors import InputError
    from engine.selftest import sd_libraries
    missing = sd_libraries()
    if missing is None:
        return
    if getattr(sys, "frozen", False):
        raise InputError(None, f"this netdiff bundle was built without the Stable Diffusion route (no {missing}): "
                               "use the Python install with the sd extra (pip install 'netdiffusion[sd]', or "
                               "pip install -e '.[sd]' in a checkout) or a bundle built with NETDIFF_BUNDLE_SD=1")
    raise InputError(None, f"the Stable Diffusion route needs the sd extra ({missing} not installed): "
                           "pip install 'netdiffusion[sd]' (pip install -e '.[sd]' in a checkout)")
