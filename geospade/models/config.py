"""Model configuration: one dataclass that rebuilds the generator and discriminator.

A :class:`ModelConfig` is stored in every checkpoint's model card (``to_dict``), so synthesis
rebuilds exactly the network that was trained. Presets give sensible starting points:
``paper`` reproduces the published generator size, ``cpu`` trains a visibly learning demo
model on a laptop CPU in minutes, ``tiny`` keeps tests fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geospade.errors import InputError

NORMS = ("batch", "instance", "none")
ADAPTIVE = ("spade", "clade")
DISCRIMINATORS = ("multiscale", "unet")
UPSAMPLING = ("nearest", "bilinear", "smooth")
FIELD_MODES = ("norms", "features", "segments")
FIELD_POOLS = ("cell", "class")


#: Default learning-rate multiplier of the texture noise's weights and of the field noise's
#: maps (``ModelConfig.texture_gain`` / ``field_gain``). With 10 the cpu recipe's texture ratio
#: reached 0.52 of the real imagery's in 320 s of CPU training, with 30 it reached 0.76
#: (benchmarks/bench_quality.py, demo validation chips, one run each).
TEXTURE_GAIN = 30


@dataclass
class ModelConfig:
    """Everything that determines the generator's and discriminator's architecture.

    Args:
        preset: name of the preset this config started from (informative only).
        num_classes: land-cover classes (without the don't-care channel).
        out_channels: imagery bands the generator produces.
        ngf: generator width; the widest layers have 16 * ngf channels.
        ndf: discriminator width of its first layer.
        num_upsampling: k; the generator starts at 1 / 2**k of the label map's size, so the
            label map's height and width must be multiples of 2**k.
        norm: parameter-free normalisation inside SPADE: "batch" (running statistics in
            eval mode: no per-tile statistic, so tiles stitch seamlessly), "instance" (per-image
            statistics: seams when tiling) or "none".
        spade_hidden: hidden channels of SPADE's shared conv.
        spade_kernel: kernel size of SPADE's convs.
        adaptive: "spade" (per-pixel conv MLP) or "clade" (per-class gamma/beta lookup; far
            cheaper, the fast mode for large rasters).
        noise_dim: channels of the per-raster style vector (0: no style input).
        noise_spatial: channels of per-pixel noise hashed from global coordinates (0: none).
        noise_field: channels of slowly varying noise, a smooth blend of values hashed on a
            lattice of ``noise_field_spacing`` pixels in global coordinates (0: none): gives
            each field or wood its own look.
        noise_field_spacing: that lattice's spacing in pixels (about a parcel's size); in
            the "segments" mode, the steps a field's key spreads (the largest field that
            takes one tone, about a parcel's size), which widens the receptive field by as
            much.
        noise_field_mode: where the field noise goes: "norms" (read with the label map by
            every normalisation layer) or "features" (added to the features of the coarse
            resolutions that get no texture noise, weighted per class and feature channel and
            zero at the start, like the texture noise: the generator starts as without it
            and learns how far each class's look varies) or "segments" (added like "features",
            but from tones that are constant over each field of the label map: one channel
            of per-pixel keys spreads through each class's connected pixels for
            ``noise_field_spacing`` steps, so each field gets its own tone and the tone
            changes exactly at its border; ``noise_field`` is then the tones' channel count).
        field_pool: how the "features" and "segments" modes bring the field noise to a
            coarse resolution: "cell" (the mean of each cell's noise, weighted by each
            class's share of the cell: a house or pond smaller than a cell gets the tone of
            the lawn or field around it) or "class" (per class, the mean over that class's own
            pixels of the cell, weighted by its share: every class in a cell keeps its own
            tone, however small).
        noise_texture: resolutions, finest first, whose residual blocks add per-pixel noise
            to their output (StyleGAN's noise inputs; 0: none). One channel of hashed noise
            per resolution, scaled by a learned weight per class and feature channel (zero at
            the start): inside a field the label map is constant, so without it nothing can
            make pixel-scale detail (crop rows, tree crowns, roof tiles).
        texture_gain: learning-rate multiplier of those weights (the factor between the
            stored and the used weights, :class:`~geospade.models.generator.TextureScale`):
            the higher, the sooner the texture grows in a short run.
        field_gain: the same for the per-class maps of the field noise in the "features" and
            "segments" modes (:class:`~geospade.models.generator.FieldScale`).
        class_noise: CLADE only: each class modulates with its own linear map of the noise,
            so one field of a class differs from the next within that class's looks; off,
            one map shared by all classes shifts every class alike (blotches across borders).
        upsample: "nearest" (as published: a 2**k-pixel grid shows in the output),
            "bilinear" (with the label map area-averaged to each resolution; a fainter grid)
            or "smooth" (bilinear, then a 3x3 binomial blur at each resolution).
        discriminator: "multiscale" (SPADE's PatchGANs, real/fake per patch, sees the labels)
            or "unet" (OASIS: segments the image into the classes + "fake", per pixel).
        num_d: discriminator scales (multiscale).
        d_layers: layers of each PatchGAN discriminator, or the U-Net's levels.
        dont_care: feed the don't-care (nodata) one-hot channel to the networks.
    """

    preset: str = "custom"
    num_classes: int = 7
    out_channels: int = 3
    ngf: int = 64
    ndf: int = 64
    num_upsampling: int = 5
    norm: str = "batch"
    spade_hidden: int = 128
    spade_kernel: int = 3
    adaptive: str = "spade"
    noise_dim: int = 0
    noise_spatial: int = 0
    noise_field: int = 0
    noise_field_spacing: int = 64
    noise_field_mode: str = "norms"
    field_pool: str = "cell"
    noise_texture: int = 0
    texture_gain: int = TEXTURE_GAIN
    field_gain: int = TEXTURE_GAIN
    class_noise: bool = False
    upsample: str = "nearest"
    discriminator: str = "multiscale"
    num_d: int = 2
    d_layers: int = 4
    dont_care: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError naming the field when a value cannot build a model."""
        if self.norm not in NORMS:
            raise InputError(f"model norm '{self.norm}' is not one of {NORMS}")
        if self.adaptive not in ADAPTIVE:
            raise InputError(f"model adaptive norm '{self.adaptive}' is not one of {ADAPTIVE}")
        if self.upsample not in UPSAMPLING:
            raise InputError(f"model upsample '{self.upsample}' is not one of {UPSAMPLING}")
        if self.noise_field_mode not in FIELD_MODES:
            raise InputError(f"model noise_field_mode '{self.noise_field_mode}' is not one of "
                             f"{FIELD_MODES}")
        if self.field_pool not in FIELD_POOLS:
            raise InputError(f"model field_pool '{self.field_pool}' is not one of {FIELD_POOLS}")
        if self.noise_field_spacing < 1:
            raise InputError(f"model noise_field_spacing must be at least 1, got "
                             f"{self.noise_field_spacing}")
        if self.discriminator not in DISCRIMINATORS:
            raise InputError(f"model discriminator '{self.discriminator}' is not one of "
                             f"{DISCRIMINATORS}")
        positive = {"num_classes": self.num_classes, "out_channels": self.out_channels,
                    "ngf": self.ngf, "ndf": self.ndf, "num_upsampling": self.num_upsampling,
                    "spade_hidden": self.spade_hidden, "num_d": self.num_d,
                    "d_layers": self.d_layers, "texture_gain": self.texture_gain,
                    "field_gain": self.field_gain}
        for name, value in positive.items():
            if int(value) < 1:
                raise InputError(f"model {name} must be at least 1, got {value}")
        if self.spade_kernel < 1 or self.spade_kernel % 2 == 0:
            raise InputError(f"model spade_kernel must be odd, got {self.spade_kernel}")
        if min(self.noise_dim, self.noise_spatial, self.noise_field) < 0:
            raise InputError(f"model noise channels must be >= 0, got noise_dim={self.noise_dim}, "
                             f"noise_spatial={self.noise_spatial}, noise_field={self.noise_field}")
        if not 0 <= self.noise_texture <= self.num_upsampling + 1:
            raise InputError(f"model noise_texture={self.noise_texture} must be between 0 and "
                             f"the {self.num_upsampling + 1} resolutions of the generator")

    # -- derived sizes --------------------------------------------------------------------
    @property
    def label_channels(self) -> int:
        """One-hot channels the networks read (classes plus don't-care if enabled)."""
        return self.num_classes + (1 if self.dont_care else 0)

    @property
    def noise_channels(self) -> int:
        """Channels of the generator's noise input (style, spatial, field and texture)."""
        return self.noise_dim + self.noise_spatial + self.field_input_channels + self.noise_texture

    @property
    def field_input_channels(self) -> int:
        """Channels of the field part of the noise input: one channel of per-pixel keys in the
        "segments" mode (the generator turns it into ``noise_field`` tones), else
        ``noise_field`` channels of lattice noise."""
        if self.noise_field_mode == "segments":
            return min(1, self.noise_field)
        return self.noise_field

    @property
    def cond_noise_channels(self) -> int:
        """Noise channels read with the label map by the normalisation layers (all but the
        texture noise and, in the "features" mode, the field noise: those are added to the
        features)."""
        field = self.noise_field if self.noise_field_mode == "norms" else 0
        return self.noise_dim + self.noise_spatial + field

    @property
    def downsampling_factor(self) -> int:
        """2**k: label maps (and tile offsets) must be multiples of this."""
        return 2 ** self.num_upsampling

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Rebuild a config; unknown keys (from a newer geospade) are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"model config has unknown fields {unknown}",
                             hint="The checkpoint was written by a newer geospade; upgrade it.")
        return cls(**dict(data))


# Values shared by all presets come from ModelConfig's defaults (the paper's).
PRESETS: dict[str, dict[str, Any]] = {
    # The published generator (ngf 64, "normal" = 5 upsamplings, SPADE hidden 128) and a
    # 2-scale PatchGAN with ndf 64 (or a 4-level OASIS U-Net). A 32-d style vector adds about
    # 1% parameters; bilinear upsampling removes the 32 px grid, and 16 channels of field
    # noise at parcel scale give OASIS-style multimodal, spatially varying looks. Texture
    # noise at the three finest resolutions, as in the cpu preset: without a per-pixel
    # source nothing inside a field can vary from pixel to pixel (not measured on a GPU).
    # The field noise is added to the coarse features (noise_field_mode="features"): its
    # weights start at zero, so the generator starts as without it and learns how far each
    # class's look varies; read by the norms it overshot the demo's field variety on the CPU
    # (see the cpu preset).
    "paper": dict(ngf=64, ndf=64, num_upsampling=5, spade_hidden=128, noise_dim=32,
                  upsample="bilinear", noise_field=16, noise_field_spacing=128,
                  noise_field_mode="features", noise_texture=3),
    # Trains on a 2-core CPU in minutes at 64-256 px: narrow, fewer upsamplings, class-adaptive
    # normalisation (CLADE, about twice as fast as SPADE's convs) and two PatchGANs of ndf 32
    # for the recipe's SPADE objective. Bilinear upsampling costs about 18% more CPU time per
    # training step than nearest (measured); "smooth" (bilinear + a 3x3 blur) brought the 16 px
    # grid statistic from 1.23 to 1.05 of the real imagery's and the judge's mIoU on synthetic
    # chips from 0.28 to 0.39 at 500 steps (one run each; the statistic varies by run). In
    # 500-step runs (benchmarks/bench_quality.py's measures) per-pixel noise read by the norms
    # (noise_spatial) gave no texture and halved the judge's mIoU, so it is off. Per-pixel
    # noise added to the features of the three finest resolutions instead (noise_texture,
    # weighted per class, zero at the start) took the demo's texture ratio from 0.22 to 0.76
    # of the real imagery's, the judge's mIoU ratio from 0.46 to 0.72 and the Frechet
    # distance from 35 to 14 in 320 s of CPU training (one run each).
    # Variety between fields comes from per-field tones (noise_field_mode="segments", 8
    # channels, keys spreading 192 px through each class's connected pixels): each field the
    # land cover delimits gets its own tone, which changes with the seed and exactly at the
    # field's border. At 450 s, against the former default without them (a per-seed style
    # vector of 8 channels mapped per class, which gives each chip a look but most fields of
    # a class in one scene the same tone): lower colour error in all eight comparisons (demo
    # chips and whole scene, FLAIR's two patches, seeds 0 and 1), whole-scene variety 0.67
    # against 0.58 and judge mIoU ratio 0.92 against 0.87 on seed 0, but variety 1.54 against
    # 0.88 on seed 1 and 0.35 against 1.00 on FLAIR 066278 (seed 0); Frechet distance lower in
    # five of the eight (docs/realism-log.md). Lattice field noise read by the norms (8
    # channels on 96 px: chip variety 0.68 and 2.74, judge mIoU ratio 0.92 and 0.74, seeds 0
    # and 1, 320 s) or added to the coarse features (whole-scene variety 0.92 and 0.96 against 0.61 and 1.57,
    # chip judge mIoU ratio 0.82 and 0.93 against 0.90 and 0.92) drifts across field borders.
    # The tones widen the receptive field, and so the halo every synthesis tile reads, by
    # 192 px (default halo 320 px against 128: synthesis takes about twice as long).
    "cpu": dict(ngf=16, ndf=32, num_upsampling=4, spade_hidden=32, d_layers=3,
                adaptive="clade", upsample="smooth", noise_field=8, noise_field_spacing=192,
                noise_field_mode="segments", noise_texture=3),
    # Unit tests.
    "tiny": dict(ngf=8, ndf=8, num_upsampling=3, spade_hidden=16, noise_dim=4, d_layers=3),
}


def check_overrides(overrides: Mapping[str, Any], source: str | None = None) -> None:
    """InputError naming the first model-config override that is unknown or of the wrong type
    (``ngf=abc``), before any model is built."""
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    for key, value in overrides.items():
        if key not in fields:
            raise InputError(f"unknown model config field '{key}'", path=source,
                             hint=f"Valid fields: {', '.join(sorted(fields))}.")
        kind = type(fields[key].default)
        # bool is an int in Python, but ngf=true is a typo, not a width.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            what = {int: "whole number", bool: "true/false value"}.get(kind, kind.__name__)
            raise InputError(f"model option {key}={value!r} is not a {what}",
                             path=source, hint=f"e.g. --model {key}={fields[key].default}.")


def model_config(preset: str, num_classes: int, out_channels: int, **overrides: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a preset, with the data's class and band counts.

    Args:
        preset: one of ``PRESETS`` ("paper", "cpu", "tiny").
        num_classes: land-cover classes (without don't-care).
        out_channels: imagery bands.
        **overrides: any ModelConfig field, e.g. ``adaptive="clade"``.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown model preset '{preset}'",
                         hint=f"Choose one of {', '.join(PRESETS)}.")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(f"unknown model config fields {unknown}",
                         hint=f"Valid fields: {', '.join(sorted(known))}.")
    values = {**PRESETS[preset], **overrides}
    return ModelConfig(preset=preset, num_classes=num_classes, out_channels=out_channels, **values)
