"""Noise schedules, classifier-free-guided sampling, and snapping samples to flows.

Training uses diffusers' :class:`DDPMScheduler` (``add_noise``,
``get_velocity``); sampling uses :class:`DPMSolverMultistepScheduler`
(deterministic DPM-Solver++ 2M, ~20 steps) built from the same config, or
:class:`DDIMScheduler`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from .directions import hold_directions
from .lengths import hold_bounds
from .ports import impose_ports


def train_scheduler(prediction_type: str = "v_prediction", num_train_timesteps: int = 1000,
                    beta_schedule: str = "squaredcos_cap_v2") -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type=prediction_type, clip_sample=False)


class FusedDPMSolver(DPMSolverMultistepScheduler):
    """diffusers' DPM-Solver++ 2M, with its second-order (midpoint) update folded into three passes
    over the sample instead of seven: on a CPU that update cost a quarter of the model's own time
    for a batch of 128-packet flows (bench/model.md). Same formula, same coefficients; floats
    differ from diffusers' in the last bits. Any other configuration runs diffusers' code."""

    def multistep_dpm_solver_second_order_update(self, model_output_list, *args, sample=None, noise=None,
                                                 **kwargs):
        cfg = self.config
        if args or kwargs or sample is None or cfg.algorithm_type != "dpmsolver++" \
                or cfg.solver_type != "midpoint" or self.step_index is None:
            return super().multistep_dpm_solver_second_order_update(model_output_list, *args, sample=sample,
                                                                     noise=noise, **kwargs)
        i = self.step_index
        (a_t, s_t), (a_0, s_0), (a_1, s_1) = (self._sigma_to_alpha_sigma_t(self.sigmas[j]) for j in (i + 1, i, i - 1))
        lam_t, lam_0, lam_1 = (torch.log(a) - torch.log(s) for a, s in ((a_t, s_t), (a_0, s_0), (a_1, s_1)))
        h = lam_t - lam_0
        r0 = (lam_0 - lam_1) / h
        k = -(a_t * (torch.exp(-h) - 1.0))          # x_t = (s_t/s_0) x + k D0 + k/2 D1, D1 = (m0 - m1) / r0
        c = 0.5 * k / r0
        if not bool(torch.isfinite(c)):
            return super().multistep_dpm_solver_second_order_update(model_output_list, sample=sample, noise=noise)
        m0, m1 = model_output_list[-1], model_output_list[-2]
        x = sample * (s_t / s_0).to(sample.dtype)
        x.add_(m0, alpha=float(k + c))
        x.add_(m1, alpha=float(-c))
        return x


def sample_scheduler(train_config: dict, solver: str = "dpm"):
    cfg = {k: v for k, v in dict(train_config).items() if not k.startswith("_")}
    if solver == "dpm":
        # thresholding with sample_max_value 1 clips each predicted x0 to [-1, 1], where the data
        # lives. For x0 prediction :func:`sample` clamps the model output itself: diffusers'
        # thresholding computes a quantile per sample, which costs more than the model on a CPU.
        return FusedDPMSolver.from_config(cfg, algorithm_type="dpmsolver++", solver_order=2,
                                          timestep_spacing="trailing",
                                          thresholding=cfg.get("prediction_type") != "sample",
                                          sample_max_value=1.0)
    if solver == "ddim":
        return DDIMScheduler.from_config(cfg, timestep_spacing="trailing", clip_sample=True, clip_sample_range=1.0)
    raise ValueError(f"unknown solver {solver!r} (dpm or ddim)")


def training_target(sched: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if sched.config.prediction_type == "epsilon":
        return noise
    if sched.config.prediction_type == "v_prediction":
        return sched.get_velocity(x0, noise, t)
    if sched.config.prediction_type == "sample":
        return x0
    raise ValueError(sched.config.prediction_type)


def initial_noise(seeds: list[int], shape: tuple[int, int]) -> torch.Tensor:
    """One independent noise tensor per flow, each from its own seeded generator.

    A flow's sample then depends on its seed only, not on which batch or
    process it was drawn in.
    """
    out = torch.empty((len(seeds), *shape))
    for j, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
        out[j] = torch.randn(shape, generator=g)
    return out


@torch.no_grad()
def sample(model, train_config: dict, labels: torch.Tensor, seeds: list[int], steps: int = 20,
           guidance: float = 1.0, solver: str = "dpm",
           on_step: Callable[[int, int], None] | None = None,
           rows: torch.Tensor | None = None, protos: torch.Tensor | None = None,
           init: torch.Tensor | None = None, strength: float = 1.0,
           ports: torch.Tensor | None = None, precision: str | None = None,
           directions: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Sample flow matrices (floats) for ``labels``.

    Args:
        labels: ``(B,)`` class indices.
        seeds: ``B`` per-flow seeds for the initial noise.
        guidance: classifier-free guidance scale; 1 = conditional only (one pass per step).
        rows: ``(B, L)`` bool presence pattern to hold every predicted ``x0`` to
            (:func:`engine.model.lengths.impose`); x0-prediction models only. It may have
            fewer rows than the model's ``max_packets`` (every flow of the batch that short):
            the batch is then sampled over those rows only, and so is ``init``.
        protos: ``(B,)`` transport per flow to hold it to (6, 17, 1; 0 = the model's choice); with ``rows``.
        init: ``(B, L, width)`` clean flows in {-1, 0, 1} to start from (guidance by a real
            flow, SDEdit): each is noised to the timestep ``strength`` of the way up the
            schedule and denoised from there, in ``round(steps * strength)`` steps.
        strength: in (0, 1]; 1 keeps nothing of ``init`` but what ``rows``/``protos`` hold.
        ports: ``(B, 2)`` (initiator, responder) ports to hold each TCP/UDP flow to (-1 = the
            model's); with ``rows`` and ``protos`` (:mod:`engine.model.ports`).
        directions: ``((B,), (B, L))``: initiator packets per flow (-1 = the model's) and Gumbel
            keys to hold each flow's direction column to (:mod:`engine.model.directions`); with ``rows``.
        precision: ``"fp32"`` or ``"bf16"`` for the model's matrix products; ``None``:
            :func:`sampling_precision` (the scheduler's arithmetic stays fp32 either way).
    Returns:
        ``(B, L, width)`` float tensor (not yet snapped); ``L`` = ``rows``' length when given.
    """
    sched = sample_scheduler(train_config, solver)
    sched.set_timesteps(steps)
    dev = next(model.parameters()).device
    L, W = model.config.max_packets, model.config.width
    precision = precision or sampling_precision(dev)
    # a batch sampled over fewer rows (``rows`` shorter than L: engine.model.sample's length
    # buckets) starts from the first rows of the numbers a flow of L rows would: torch's CPU randn
    # fills uniforms in order and transforms them 16 at a time, so a draw of n rows is the first n
    # rows of a draw of L when n * W is a multiple of 16 (else: draw L rows and cut, 8x the cost
    # for a 128-row flow of a 1024-row model)
    n = L if rows is None else rows.shape[1]
    noise = initial_noise(seeds, (n if (n * W) % 16 == 0 else L, W))
    if noise.shape[1] > n:
        noise = noise[:, :n].contiguous()
    noise = noise.to(dev)
    timesteps = sched.timesteps
    if init is None:
        x = noise * sched.init_noise_sigma
    else:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength {strength} is not in (0, 1]")
        # as diffusers' img2img pipelines: the last round(steps * strength) steps of the same schedule
        start = steps - max(1, min(steps, int(round(steps * strength))))
        timesteps = timesteps[start * sched.order:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start * sched.order)
        x = sched.add_noise(init.to(dev, noise.dtype), noise, timesteps[:1].repeat(len(seeds)))
    x0_pred = sched.config.prediction_type == "sample"
    if rows is not None and not x0_pred:
        raise ValueError("a presence pattern needs an x0-prediction model (prediction_type 'sample')")
    labels = labels.to(dev)
    null = torch.full_like(labels, model.config.num_classes)
    cfgm = model.config
    if getattr(cfgm, "presence_input", False) and rows is None:
        raise ValueError("this model is told the flow length: pass rows (engine.model.lengths.presence_mask)")
    rows_dev = None if rows is None else rows.to(dev)
    rows_in = rows_dev if getattr(cfgm, "presence_input", False) else None
    self_cond = getattr(cfgm, "self_condition", False)
    x0_prev = None
    bounds = hold_bounds(rows_dev, protos, W, noise.dtype) if (rows is not None and x0_pred) else None
    if directions is not None:
        directions = (directions[0].to(dev), directions[1].to(dev))
    for k, t in enumerate(timesteps):
        xin = sched.scale_model_input(x, t)
        if guidance == 1.0:
            with _autocast(dev, precision):
                out = model(xin, t, labels, rows_in, x0_prev).float()
        else:
            dup = (lambda v: None if v is None else torch.cat([v, v]))
            with _autocast(dev, precision):
                both = model(torch.cat([xin, xin]), t, torch.cat([labels, null]), dup(rows_in), dup(x0_prev)).float()
            cond, unc = both.chunk(2)
            out = unc + guidance * (cond - unc)
        if x0_pred:
            if bounds is None:
                out = out.clamp(-1.0, 1.0)
            else:       # clipped to [-1, 1] and held to the drawn shape in one pass (lengths.hold_bounds)
                out = out.clamp_(*bounds)
                if directions is not None:
                    hold_directions(out, rows_dev, *directions)
                if ports is not None and protos is not None:
                    impose_ports(out, rows, protos, ports)
            if self_cond:
                x0_prev = out
        x = sched.step(out, t, x).prev_sample
        if on_step is not None:
            on_step(k + 1, len(timesteps))
    return x


PRECISIONS = ("auto", "fp32", "bf16")


def sampling_precision(dev) -> str:
    """``"bf16"`` or ``"fp32"``: the precision of the model's matrix products when sampling on ``dev``.

    ``$NETDIFF_PRECISION`` decides (``auto``, ``fp32``, ``bf16``). ``auto`` (the default) is bf16 on
    a CPU that computes bfloat16 natively (AVX512-BF16 or AMX: 1.5x the fp32 speed on the project
    machine, the same quality on every figure of bench/quality.md, bench/model.md) and fp32
    elsewhere: emulated bf16 is slower than fp32, and GPU figures are still to be measured.
    Samples depend on it (as on the CPU's instruction set), so a run records it.
    """
    want = (os.environ.get("NETDIFF_PRECISION", "") or "auto").strip().lower()
    if want not in PRECISIONS:
        from engine.errors import InputError
        raise InputError(None, f"NETDIFF_PRECISION={want!r}: use auto, fp32 or bf16")
    if want != "auto":
        return want
    if torch.device(dev).type != "cpu":
        return "fp32"
    native = any(getattr(torch.cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bf16" if native else "fp32"


def _autocast(dev, precision: str):
    if precision == "bf16":
        return torch.autocast(torch.device(dev).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_threads() -> int:
    """Torch CPU threads for sampling: ``$NETDIFF_THREADS``, else 1.

    One thread by default, for two reasons: the thread count can change how a
    matrix product is split and so the last bits of a float, and samples must
    not depend on how busy the machine is (same seed, same bytes); and on
    shared cores OpenMP threads that wait on each other collapse (a 2-thread
    forward pass measured 9x slower than 1 thread under load). Several
    processes (``accelerate launch``) use the cores instead.
    """
    env = os.environ.get("NETDIFF_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 1


def snap(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Floats -> int8 in {-1, 0, 1} (nearest value)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.clip(np.rint(x), -1, 1).astype(np.int8)


def cut_at_padding(m: np.ndarray) -> np.ndarray:
    """Keep the rows that hold a packet, dropping padding rows wherever they are.

    Cutting at the *first* padding row instead made flows far too short: a
    sample often has a stray padding-like row early on (measured on 32 flows
    per class: zoom mean 6.8 packets cut at the first padding row, 12.2
    keeping every packet row, 27.9 real; youtube 18.5 / 35.0 / 41.2).
    """
    from engine.codec.matrix import present_rows
    return m[present_rows(m)]
