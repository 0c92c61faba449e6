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
