"""Training throughput and peak memory per model preset, and the generator's overhead.

For each preset ("paper", "cpu", "tiny") at 256 px, a fresh subprocess runs real training
steps (``geospade.training.train`` on demo chips) and reports images per second and its peak
memory (resident set size on the CPU, allocated memory on a GPU). With a CUDA GPU the presets
are measured again on it, with mixed precision on and off. Finally the generator's forward time
is printed beside a same-size reference SPADE generator written from the paper (ngf 64,
"normal", 3x3 SPADE convs with 128 hidden channels): a ratio near 1.0 means the fully
convolutional, tiling-ready generator costs nothing extra.

Usage::

    python benchmarks/bench_train.py                  # CPU, and GPU when there is one
    python benchmarks/bench_train.py --presets cpu tiny --steps 5 --batch-size 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---- the reference generator (the published architecture, for timing only) -----------------


class RefSPADE(nn.Module):
    """Published SPADE: parameter-free batch norm, then per-pixel gamma/beta from the labels."""

    def __init__(self, channels: int, label_nc: int, hidden: int = 128):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x, seg):
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        hidden = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(hidden)) + self.beta(hidden)


class RefBlock(nn.Module):
    """Published SPADE residual block (spectral norm on its convs, learned shortcut)."""

    def __init__(self, fin: int, fout: int, label_nc: int):
        super().__init__()
        sn = nn.utils.spectral_norm
        middle = min(fin, fout)
        self.conv_0 = sn(nn.Conv2d(fin, middle, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(middle, fout, 3, padding=1))
        self.norm_0, self.norm_1 = RefSPADE(fin, label_nc), RefSPADE(middle, label_nc)
        self.learned = fin != fout
        if self.learned:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = RefSPADE(fin, label_nc)

    def forward(self, x, seg):
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class RefGenerator(nn.Module):
    """Published SPADE generator without the style encoder, "normal" (5 upsamplings)."""

    def __init__(self, label_nc: int, out_channels: int = 3, ngf: int = 64):
        super().__init__()
        nf = ngf
        self.fc = nn.Conv2d(label_nc, 16 * nf, 3, padding=1)
        self.head_0 = RefBlock(16 * nf, 16 * nf, label_nc)
        self.middle_0 = RefBlock(16 * nf, 16 * nf, label_nc)
        self.middle_1 = RefBlock(16 * nf, 16 * nf, label_nc)
        self.ups = nn.ModuleList(RefBlock(a * nf, b * nf, label_nc)
                                 for a, b in ((16, 8), (8, 4), (4, 2), (2, 1)))
        self.conv_img = nn.Conv2d(nf, out_channels, 3, padding=1)

    def forward(self, seg):
        x = self.fc(F.interpolate(seg, size=(seg.shape[2] // 32, seg.shape[3] // 32)))
        x = self.head_0(x, seg)
        x = F.interpolate(x, scale_factor=2)
        x = self.middle_1(self.middle_0(x, seg), seg)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


# ---- workers (each in a fresh process, so peak memory is its own) ---------------------------


def make_chips(folder: Path, size: int, count: int) -> Path:
    """Demo chips of ``size`` px, at least ``count`` of them."""
    from geospade.chips.export import export_chips
    from geospade.demo import make_demo_scene

    side = size
    while (side // size) ** 2 < count:
        side *= 2
    scene = make_demo_scene(folder / "scene", size=side, seed=0, progress=False)
    export_chips(scene.landcover, scene.imagery, folder / "chips", tile_size=size,
                 max_nodata=1.0, progress=False)
    return folder / "chips"


class _Done(Exception):
    """Stops training after the timed steps (no checkpoint of a benchmark is needed)."""


def train_worker(args: argparse.Namespace) -> dict:
    """Time real training steps of one preset; returns img/s and peak memory."""
    from geospade.training import TrainConfig, train

    config = TrainConfig(preset=args.preset, batch_size=args.batch_size, device=args.device,
                         amp=args.amp, steps=args.warmup + args.steps + 1, log_every=1000,
                         checkpoint_every=10**6, sample_every=10**6)
    stamps: list[float] = []

    def clock(step: int, info: dict) -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        if step == args.warmup + args.steps:
            raise _Done

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(_Done):
        train(args.chips, Path(tmp) / "run", config, progress=False, callback=clock)
    # stamps[i] is the end of step i + 1: durations of the steps after the warm-up.
    durations = [b - a for a, b in zip(stamps[args.warmup - 1:-1], stamps[args.warmup:],
                                       strict=True)]
    result = {"img_per_s": args.batch_size / statistics.median(durations),
              "step_s": statistics.median(durations),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if args.device.startswith("cuda"):
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def forward_worker(args: argparse.Namespace) -> dict:
    """Median eval-mode forward time of our paper generator and the reference, same size."""
    from geospade.models import build_generator, model_config, one_hot

    device = torch.device(args.device)
    num_classes, size = 7, args.size
    labels = torch.randint(0, num_classes, (1, size, size), device=device)
    onehot = one_hot(labels, num_classes)
    models = {
        "reference SPADE (published)": (RefGenerator(num_classes + 1), lambda m: m(onehot)),
        "geospade paper preset": (build_generator(model_config("paper", num_classes, 3)),
                                  lambda m: m(onehot, m.make_noise(1, size, size, 0))),
        "geospade paper, no noise": (build_generator(model_config("paper", num_classes, 3,
                                                                  noise_dim=0)),
                                     lambda m: m(onehot)),
    }
    # Round-robin over the models, so a change in machine load affects them all alike.
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for name, (model, _) in models.items():
            models[name] = (model.to(device).eval(), models[name][1])
        for _ in range(args.warmup + args.steps):
            for name, (model, run) in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run(model)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    return {name: {"forward_s": statistics.median(times[name][args.warmup:]),
                   "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
            for name, (model, _) in models.items()}


def spawn(args: argparse.Namespace, mode: str, **changes) -> dict:
    """Run a worker in a fresh Python process and return its JSON result."""
    argv = [sys.executable, __file__, "--_worker", mode, "--chips", str(args.chips),
            "--size", str(args.size), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--batch-size", str(changes.get("batch_size", args.batch_size)),
            "--device", changes.get("device", "cpu"), "--threads", str(args.threads)]
    if "preset" in changes:
        argv += ["--preset", changes["preset"]]
    if changes.get("amp") is not None:
        argv += ["--amp" if changes["amp"] else "--no-amp"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["paper", "cpu", "tiny"])
    parser.add_argument("--size", type=int, default=256, help="chip size in pixels")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--gpu-batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, choices=range(1, 100), metavar="N",
                        help="untimed steps first (at least 1)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for torch")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU measurements")
    parser.add_argument("--_worker", choices=["train", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--chips", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args._worker:
        worker = train_worker if args._worker == "train" else forward_worker
        print(json.dumps(worker(args)))
        return

    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), "
          f"GPU: {torch.cuda.get_device_name(0) if cuda else 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        args.chips = make_chips(Path(tmp), args.size, max(args.batch_size, args.gpu_batch_size))
        print(f"\nTraining at {args.size} px (median of {args.steps} steps after "
              f"{args.warmup} warm-up; peak memory of a fresh process)")
        print(f"{'device':<6} {'preset':<7} {'amp':<4} {'batch':>5} {'img/s':>9} {'s/step':>8} "
              f"{'peak RSS MiB':>13} {'peak GPU MiB':>13}")
        runs = [] if args.no_cpu else [("cpu", p, False, args.batch_size) for p in args.presets]
        if cuda:
            runs += [("cuda", p, amp, args.gpu_batch_size)
                     for p in args.presets for amp in (True, False)]
        for device, preset, amp, batch in runs:
            r = spawn(args, "train", preset=preset, device=device, amp=amp, batch_size=batch)
            if "error" in r:
                print(f"{device:<6} {preset:<7} {'on' if amp else 'off':<4} {batch:>5} "
                      f"failed: {r['error']}")
                continue
            gpu = f"{r['peak_gpu_mib']:>13.0f}" if "peak_gpu_mib" in r else f"{'-':>13}"
            print(f"{device:<6} {preset:<7} {'on' if amp else 'off':<4} {batch:>5} "
                  f"{r['img_per_s']:>9.2f} {r['step_s']:>8.2f} {r['peak_rss_mib']:>13.0f} {gpu}")

        for device in (["cpu"] if not args.no_cpu else []) + (["cuda"] if cuda else []):
            r = spawn(args, "forward", device=device)
            if "error" in r:
                print(f"\nforward on {device} failed: {r['error']}")
                continue
            ref = r["reference SPADE (published)"]["forward_s"]
            print(f"\nGenerator forward, 1 x {args.size} px, 7 classes, eval, {device}:")
            for name, row in r.items():
                print(f"  {name:<30} {row['forward_s'] * 1000:>9.1f} ms  "
                      f"{row['params_m']:>6.1f} M params  ratio {row['forward_s'] / ref:.2f}")


if __name__ == "__main__":
    main()
