#!/usr/bin/env python3
"""Checkpoint sizes per model preset, measured by saving them.

For each preset (7 classes, 3 bands, as the Chesapeake recipe trains) this builds the
generator and discriminator, and saves with torch.save: the training checkpoint (generator,
EMA generator, discriminator and both Adam optimisers with their two moments per weight, as
``geospade train`` writes) and the generator weights alone (what synthesis needs). Prints
the file sizes and the ratio between the two.

    python benchmarks/bench_checkpoint_size.py [--presets tiny cpu paper] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def adam_state(module) -> dict:
    """An Adam optimiser's state_dict after one step: two moments per weight, zeros here."""
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=1e-4)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimiser.step()  # creates exp_avg and exp_avg_sq like a real run
    return optimiser.state_dict()


def measure(preset: str, workdir: Path) -> dict:
    import torch

    from geospade.models import build_discriminator, build_generator, model_config

    cfg = model_config(preset, 7, 3)
    generator, discriminator = build_generator(cfg), build_discriminator(cfg)
    g_state = generator.state_dict()
    # A copy: torch.save stores a tensor shared by two entries once, the EMA is its own.
    ema_state = {k: v.clone() for k, v in g_state.items()}
    full = {"generator": g_state, "generator_ema": ema_state,
            "discriminator": discriminator.state_dict(),
            "optimizer_g": adam_state(generator), "optimizer_d": adam_state(discriminator)}
    sizes = {}
    for name, payload in (("training", full), ("generator_only", {"generator_ema": ema_state})):
        path = workdir / f"{preset}_{name}.pt"
        began = time.perf_counter()
        torch.save(payload, path)
        sizes[name] = path.stat().st_size
        sizes[f"{name}_save_s"] = time.perf_counter() - began
        path.unlink()
    sizes["generator_params"] = sum(p.numel() for p in generator.parameters())
    sizes["discriminator_params"] = sum(p.numel() for p in discriminator.parameters())
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "cpu", "paper"],
                        help="model presets to measure")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the temporary files (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        print(f"{'preset':<8}{'G params':>12}{'D params':>12}{'training ckpt':>16}"
              f"{'generator only':>16}{'ratio':>8}")
        for preset in args.presets:
            s = measure(preset, Path(tmp))
            print(f"{preset:<8}{s['generator_params'] / 1e6:>11.2f}M"
                  f"{s['discriminator_params'] / 1e6:>11.2f}M"
                  f"{s['training'] / 2**20:>13.1f} MiB{s['generator_only'] / 2**20:>13.1f} MiB"
                  f"{s['training'] / s['generator_only']:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
