"""Print (JSON) every module the product imports on its user paths, for build.spec.

diffusers and transformers import their classes lazily (by name, from a pipeline's
model_index.json), so PyInstaller's static analysis cannot tell which of their hundreds of
model packages a user path needs: it either misses the ones we use or takes them all
(~130 MB of transformers source). This script runs every user path once, tiny and offline,
through the same command line users run (encode, train native and LoRA, generate native,
SD text2img / img2img / ControlNet for the SD 1.5 and SD3 layouts, evaluate, export, balance,
check, repair, inspect, decode, recipes, models, jobs, selftest's console check) and adds the
classes a downloaded pipeline may name (every scheduler, CLIP image processor, T5). The
modules it saw are what the bundle must hold; build.spec excludes the rest of those
packages.

With NETDIFF_BUNDLE_SD=0 (build.spec's default: the lean lab bundle) the SD route's own
libraries (SD_ONLY) are made unimportable before anything is imported, so every other path
runs as it will in that bundle, and the SD paths are not run; the diffusers modules only they
need then go unlisted and build.spec leaves them out.

Usage: python packaging/runtime_modules.py OUT.json   (takes a minute or two on 2 cores)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# The SD route's own libraries (the `sd` extra, less diffusers, which the native model uses too), and
# `kernels` (Hub compute kernels, 5.6 MB), which transformers requires: diffusers names it in code no
# lab path runs (attention backends, quantizers), so PyInstaller took it in when it was installed
SD_ONLY = ("transformers", "tokenizers", "peft", "kernels")


def bundle_sd() -> bool:
    """Whether the bundle carries the SD route: NETDIFF_BUNDLE_SD, "0" (default: the lab bundle) or "1"."""
    v = os.environ.get("NETDIFF_BUNDLE_SD", "0")
    if v not in ("0", "1"):
        raise SystemExit(f"NETDIFF_BUNDLE_SD={v!r}: 0 (the lab bundle, no SD route) or 1 (with the SD route)")
    return v == "1"


def run(*argv: str, ok=(0,)) -> None:
    from click.testing import CliRunner

    from netdiff_tui.cli import main
    r = CliRunner().invoke(main, list(argv))
    if r.exit_code not in ok:
        tail = (r.output or "").strip().splitlines()[-3:]
        raise SystemExit(f"probe: netdiff {' '.join(argv)} -> exit {r.exit_code}: {' / '.join(tail)}"
                         + (f" ({r.exception!r})" if r.exception and not isinstance(r.exception, SystemExit) else ""))


def named_classes() -> None:
    """Classes a downloaded pipeline's model_index.json may name that the tiny pipelines do not use."""
    import diffusers
    import transformers
    for name in dir(diffusers):
        if name.endswith(("Scheduler", "SchedulerOutput")) or name in (
                "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionControlNetPipeline",
                "StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3ControlNetPipeline",
                "ControlNetModel", "SD3ControlNetModel", "AutoencoderKL", "UNet2DConditionModel",
                "SD3Transformer2DModel"):
            getattr(diffusers, name)
    for name in ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPTokenizer", "CLIPTokenizerFast",
                 "CLIPImageProcessor", "T5EncoderModel", "T5TokenizerFast", "T5Tokenizer"):
        try:
            getattr(transformers, name)
        except (ImportError, AttributeError):
            pass        # a tokenizer backend (sentencepiece) that is not installed: not bundled either


def own_module(name: str, module) -> bool:
    """Whether ``name`` is a module an importer can find under that name: not an alias (requests.packages.urllib3)
    nor a submodule an extension registers (torch._C._nn). A module that replaces itself in sys.modules with an
    object without a spec (torch.backends.cudnn, imported by diffusers and accelerate) counts."""
    spec = getattr(module, "__spec__", None)
    if spec is not None:
        return spec.name == name
    # importlib.util.find_spec refuses a module in sys.modules without a spec: look for its file instead
    from importlib.machinery import PathFinder
    parent, _, leaf = name.rpartition(".")
    path = getattr(sys.modules.get(parent), "__path__", None) if parent else None
    if parent and path is None:
        return False
    return PathFinder.find_spec(leaf, path) is not None


def main(out: str) -> None:
    with_sd = bundle_sd()
    if not with_sd:
        for name in SD_ONLY:        # an import of them now fails as it will in the bundle
            sys.modules[name] = None
    tmp = Path(tempfile.mkdtemp(prefix="netdiff-probe-"))
    os.environ.update(NETDIFF_JOBS_DIR=str(tmp / "jobs"), XDG_CONFIG_HOME=str(tmp / "cfg"),
                      XDG_DATA_HOME=str(tmp / "data"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf"))
    try:
        sys.path.insert(0, str(ROOT))
        import importlib
        import pkgutil

        import engine
        import netdiff_tui
        for pkg in (engine, netdiff_tui):
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
                importlib.import_module(m.name)
        cap = tmp / "cap"
        for label, name in (("zoom", "eth.pcap"), ("dns", "sll.pcap")):
            (cap / label).mkdir(parents=True)
            shutil.copy(FIXTURES / name, cap / label / name)
        ds = str(tmp / "ds")
        run("encode", str(cap), "-o", ds, "--label-from-dir", "-q")
        run("inspect", str(FIXTURES / "eth.pcap"), "--json")
        run("decode", ds, "-o", str(tmp / "dec.pcap"))
        run("check", str(FIXTURES / "eth.pcap"), ok=(0, 1))     # loopback checksums are offloaded: not clean
        run("repair", str(FIXTURES / "eth.pcap"), "-o", str(tmp / "rep.pcap"), "-q")
        run("train", "--data", ds, "--out", str(tmp / "native"), "--steps", "2")
        # on two sampling processes: the pool's parent side (its workers import what generate does)
        run("generate", "--label", "zoom", "-n", "3", "--steps", "2", "--packets-max", "16", "-o", str(tmp / "g1"),
            "--processes", "2", "-q")
        run("generate", "--preset", "dns", "-n", "2", "--steps", "2", "--like", str(cap / "dns"), "-o",
            str(tmp / "g2"), "-q")
        run("evaluate", "--real", str(cap), "--synthetic", str(tmp / "g1"), "-o", str(tmp / "eval"),
            "--classes", "zoom", ok=(0, 1, 2))
        run("export", str(tmp / "g1"), str(tmp / "g2"), "-o", str(tmp / "exp"), "-q")
        run("balance", "--real", str(cap), "--target", "2", "-o", str(tmp / "bal"), ok=(0, 1, 2))
        for argv in (("recipes", "list"), ("models", "list"), ("jobs", "list"), ("layout",), ("--version",)):
            run(*argv)

        from engine.selftest import sd_libraries
        missing = sd_libraries()
        if not with_sd:
            print("probe: SD route left out (NETDIFF_BUNDLE_SD=0; the bundle's selftest will skip it)", file=sys.stderr)
        elif missing:       # the `sd` extra is not installed: the bundle is built without the SD route
            print(f"probe: SD route skipped: {missing} not installed (the bundle's selftest will say so)",
                  file=sys.stderr)
        else:
            sd_paths(tmp, ds)
        from netdiff_tui.cmd_selftest import check_console
        (tmp / "console").mkdir()
        check_console(tmp / "console")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    names = sorted(n for n, m in list(sys.modules.items()) if m is not None and own_module(n, m))
    Path(out).write_text(json.dumps(names, indent=0) + "\n")
    print(f"probe: {len(names)} modules -> {out}")


def sd_paths(tmp: Path, ds: str) -> None:
    """LoRA training and the three sampling modes for both SD layouts, tiny and offline."""
    from engine.model.sd.build import build_pipeline
    from engine.model.sd.tiny import TINY_SD, TINY_SD3
    for fam, cfg in (("sd", TINY_SD), ("sd3", TINY_SD3)):
        base, cn, sdrun = tmp / f"{fam}-base", tmp / f"{fam}-cn", tmp / f"{fam}-run"
        build_pipeline(base, cfg, fam, controlnet=cn)
        run("train", "--model-type", "sd", "--base", str(base), "--data", ds, "--out", str(sdrun), "--steps", "1",
            "--rank", "4", "--rows", "16", "--batch-size", "2")
        common = ("--model", str(sdrun), "--label", "dns", "-n", "1", "--steps", "2", "-q")
        run("generate", *common, "-o", str(tmp / f"{fam}-t2i"))
        run("generate", *common, "--like", ds, "-o", str(tmp / f"{fam}-i2i"))
        run("generate", *common, "--like", ds, "--controlnet", str(cn), "-o", str(tmp / f"{fam}-cn-out"))
    named_classes()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
