"""Configs of tiny random-weight pipelines in the SD 1.5 and SD3 layouts, for
:func:`engine.model.sd.build.build_pipeline`.

They exist so that the SD route can be exercised with no download: by the tests and by
``netdiff selftest`` on an installed or frozen build. Sizes are the smallest diffusers
accepts for these layouts (norm groups divide the channels, the CLIP text encoder's
vocabulary comes from the byte-level tokenizer written by ``build``); a 16-row flow
image samples in well under a second on a CPU.
"""

from __future__ import annotations

VAE = dict(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4, layers_per_block=1,
           sample_size=32)
TEXT = dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, projection_dim=24)
TINY_SD = {
    "unet": dict(block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=24, norm_num_groups=8,
                 sample_size=8, in_channels=4, out_channels=4, attention_head_dim=4,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
    "vae": VAE,
    "text_encoder": TEXT,
    "scheduler": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                      steps_offset=1, prediction_type="epsilon"),
}
TINY_SD3 = {
    "transformer": dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                        num_attention_heads=2, joint_attention_dim=24, caption_projection_dim=16,
                        pooled_projection_dim=48, out_channels=4, pos_embed_max_size=160),
    "vae": {**VAE, "use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.0609,
            "scaling_factor": 1.5035},
    "text_encoder": TEXT,
    "scheduler": dict(shift=3.0),
}
