"""The fully convolutional SPADE generator: one-hot land cover (+ noise) -> imagery in [-1, 1].

The published generator starts from a fixed-size tensor; here the start tensor is the label
map itself downsampled by 2**k and passed through a 3x3 conv, so the network accepts any
height and width that are multiples of 2**k. Synthesis feeds it a tile plus a halo larger than
the training chips. With batch norm in eval mode every layer is a translation-equivariant
function of the label map and the noise (for shifts that are multiples of 2**k), so generating
a tile equals cropping the generation of the whole raster away from a border of width
:func:`receptive_field`.

Channel schedule: at resolution j (0 = coarsest, k = full) the width is
``ngf * min(16, 2**(k - j))``; one block at the start resolution, two after the first
upsampling, then one per resolution, as in the published "normal" generator for k = 5.

Texture noise (``noise_texture`` resolutions, finest first): after each residual block there,
one channel of per-pixel noise is added to the features, weighted per class and feature
channel (StyleGAN's noise inputs, looked up per class like CLADE). At 1 / 2**d resolution the
noise is the mean of each 2**d cell of full-resolution hashed noise, the cells anchored at
global multiples of 2**d, so it is pointwise, adds nothing to the receptive field and keeps
tiling exact.

Field noise in the "features" mode (``noise_field_mode``) is added the same way at the coarse
resolutions that get no texture noise: its cell means there, mapped to each feature channel by
a learned per-class matrix (zero at the start), so a class's fields can take different looks
and the look changes where the class does, not across a border. In the "segments" mode the
field part of the noise is one channel of per-pixel keys instead; the generator spreads each
key through the pixels of its class (:func:`geospade.models.noise.segment_tones`, a bounded
number of steps, so tiling stays exact with a halo that much wider) and adds the resulting
per-field tones the same way: each field gets its own look, with the change at its border.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from geospade.errors import InputError
from geospade.models import noise as noise_lib
from geospade.models.blocks import SpadeResBlock
from geospade.models.config import TEXTURE_GAIN, ModelConfig
from geospade.models.init import init_conv


def channel_schedule(cfg: ModelConfig) -> list[list[tuple[int, int]]]:
    """(fin, fout) of every residual block, grouped by resolution (coarsest first)."""
    k = cfg.num_upsampling
    width = [cfg.ngf * min(16, 2 ** (k - j)) for j in range(k + 1)]
    stages = [[(width[0], width[0])]]
    for j in range(1, k + 1):
        stage = [(width[j - 1], width[j])]
        if j == 1:  # the published generator's second middle block
            stage.append((width[j], width[j]))
        stages.append(stage)
    return stages


def receptive_field(cfg: ModelConfig) -> int:
    """Radius r in pixels: an output pixel depends only on inputs within r of it.

    Computed by interval arithmetic through the network (convs, nearest upsampling, and the
    label map sampled at each resolution), for every alignment of the output pixel to the
    coarsest grid, counting a low-resolution cell as all the full-resolution pixels it covers.
    A crop of the output further than r from the crop's border is therefore unaffected by zero
    padding, and equals the same pixels of a generation over any larger window (for shifts that
    are multiples of 2**k). With instance norm every pixel depends on the whole tile: this is
    then only the convolutional part.

    Args:
        cfg: the model config.
    """
    k = cfg.num_upsampling
    # Reach of the conditioning map beyond a block's output, in that resolution's cells:
    # two 3x3 convs before norm_0's position, plus SPADE's two convs (none for CLADE).
    spade_reach = 2 * (cfg.spade_kernel // 2) if cfg.adaptive == "spade" else 0
    stages = channel_schedule(cfg)
    radius = 0
    for p in range(2 ** k):
        lo, hi = p - 1, p + 1  # final 3x3 conv at full resolution
        bilinear = cfg.upsample != "nearest"
        blur = cfg.upsample == "smooth"
        first, last = p, p
        for j in range(k, -1, -1):
            s = 2 ** (k - j)
            for _ in stages[j]:
                first = min(first, (lo - 2 - spade_reach) * s)
                last = max(last, (hi + 2 + spade_reach) * s + s - 1)
                lo, hi = lo - 2, hi + 2
            if j > 0 and blur:  # the 3x3 blur after the upsampling
                lo, hi = lo - 1, hi + 1
            if j > 0 and bilinear:  # fine index i blends coarse (i - 1) // 2 and (i + 1) // 2
                lo, hi = (lo - 1) // 2, (hi + 1) // 2
            elif j > 0:  # nearest 2x upsampling: fine index i reads coarse index i // 2
                lo, hi = lo // 2, hi // 2
        lo, hi = lo - 1, hi + 1  # the first conv on the coarsest label map
        s = 2 ** k
        first, last = min(first, lo * s), max(last, hi * s + s - 1)
        radius = max(radius, p - first, last - p)
    return radius + field_reach(cfg)  # the tones read keys and labels this much further


def field_reach(cfg: ModelConfig) -> int:
    """Pixels the per-field tones (``noise_field_mode="segments"``) read beyond a pixel: the
    steps a field's key spreads; 0 without them. Part of :func:`receptive_field`; a tone is
    exactly the whole raster's only where the window extends this far around the pixel."""
    if cfg.noise_field_mode == "segments" and cfg.noise_field:
        return int(cfg.noise_field_spacing)
    return 0


def seamless_halo(cfg: ModelConfig) -> int:
    """The smallest halo, a multiple of 2**k, at least :func:`receptive_field`.

    Tiles generated with this much context on every side (and origins on the 2**k grid) are
    identical to generating the whole raster at once, bar float rounding. Much smaller halos
    are usually invisible in practice, because distant pixels have little influence.
    """
    f = cfg.downsampling_factor
    return -(-receptive_field(cfg) // f) * f


class SpadeGenerator(nn.Module):
    """SPADE generator, fully convolutional, with optional tiling-invariant noise.

    Args:
        cfg: the model config.

    Attributes:
        config: the config it was built from.
        downsampling_factor: 2**k; input sizes and tile offsets must be multiples of it.
        receptive_field: radius in pixels of an output pixel's dependence on the input.
        field_reach: the part of it the per-field tones add (:func:`field_reach`).
        seamless_halo: receptive_field rounded up to a multiple of downsampling_factor.
        noise_channels: channels of the noise input (0: the model takes none).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.downsampling_factor = cfg.downsampling_factor
        self.receptive_field = receptive_field(cfg)
        self.field_reach = field_reach(cfg)
        self.seamless_halo = seamless_halo(cfg)
        self.noise_channels = cfg.noise_channels
        cond = cfg.label_channels + cfg.cond_noise_channels
        stages = channel_schedule(cfg)
        self.head = init_conv(nn.Conv2d(cond, stages[0][0][0], 3, padding=1))
        self.stages = nn.ModuleList(
            nn.ModuleList(
                SpadeResBlock(fin, fout, cond, cfg.norm, cfg.adaptive, cfg.spade_hidden,
                              cfg.spade_kernel)
                for fin, fout in stage)
            for stage in stages)
        self.to_image = init_conv(nn.Conv2d(stages[-1][-1][1], cfg.out_channels, 3, padding=1))
        # Each class's own linear map of the noise (one 1x1 conv for all classes, then the
        # pixel's class picks its map): the noise then varies a field within its class's looks.
        n = cfg.cond_noise_channels
        self.class_noise = (init_conv(nn.Conv2d(n, cfg.label_channels * n, 1, bias=False))
                            if cfg.class_noise and n else None)
        # Texture noise: per block of the finest noise_texture resolutions, the noise's weight
        # for each feature channel, looked up per class (a 1x1 map of the one-hot labels).
        textured = len(stages) - cfg.noise_texture
        self.texture_scales = nn.ModuleList(
            nn.ModuleList(TextureScale(cfg.label_channels, fout, cfg.texture_gain)
                          for _, fout in stage)
            if j >= textured else nn.ModuleList()
            for j, stage in enumerate(stages))
        # Field noise added to the features: per block of the coarse resolutions without
        # texture noise, a per-class map of the field channels to the feature channels.
        fields = cfg.noise_field if cfg.noise_field_mode != "norms" else 0
        coarse = max(1, textured)
        self.field_scales = nn.ModuleList(
            nn.ModuleList(FieldScale(cfg.label_channels, fields, fout, cfg.field_gain)
                          for _, fout in stage)
            if fields and j < coarse else nn.ModuleList()
            for j, stage in enumerate(stages))

    def make_noise(self, batch: int, height: int, width: int, seed: noise_lib.IntArg,
                   row_off: noise_lib.IntArg = 0, col_off: noise_lib.IntArg = 0,
                   device: torch.device | str | None = None) -> torch.Tensor | None:
        """Noise for windows of a raster: a pure function of the seed and global pixels.

        Args:
            batch: number of windows.
            height, width: window size in pixels.
            seed: the raster's noise seed (one for all windows, or one per window).
            row_off, col_off: global top-left pixel of the window(s); ints or one per window.
                Keep them multiples of ``downsampling_factor`` so tiles line up.
            device: where to build it (default: the model's device).

        Returns:
            (batch, noise_channels, height, width) float32, or None if the model takes none.
        """
        if device is None:
            device = self.to_image.weight.device
        cfg = self.config
        return noise_lib.make_noise(batch, height, width, seed, row_off, col_off,
                                    style_channels=cfg.noise_dim,
                                    spatial_channels=cfg.noise_spatial,
                                    field_channels=cfg.field_input_channels,
                                    field_spacing=self._field_spacing,
                                    texture_channels=cfg.noise_texture, device=device)

    @property
    def _field_spacing(self) -> int:
        """Lattice spacing of the field input: 1 (a key per pixel) in the "segments" mode."""
        cfg = self.config
        return 1 if cfg.noise_field_mode == "segments" else cfg.noise_field_spacing

    def _check(self, onehot: torch.Tensor, noise: torch.Tensor | None) -> None:
        cfg = self.config
        if onehot.dim() != 4 or onehot.shape[1] not in (cfg.num_classes + 1, cfg.label_channels):
            raise InputError(
                f"generator expects one-hot labels (B, {cfg.num_classes + 1}, H, W), got "
                f"{tuple(onehot.shape)}", hint="Build them with geospade.models.one_hot.")
        h, w = onehot.shape[-2:]
        f = self.downsampling_factor
        if h % f or w % f:
            raise InputError(f"label map size {h}x{w} is not a multiple of {f} (2**k)",
                             hint=f"Pad or crop the label map to a multiple of {f} pixels.")
        if noise is not None and (noise.shape[1] != self.noise_channels
                                  or noise.shape[-2:] != onehot.shape[-2:]
                                  or noise.shape[0] != onehot.shape[0]):
            raise InputError(
                f"noise of shape {tuple(noise.shape)} does not fit labels {tuple(onehot.shape)} "
                f"and {self.noise_channels} noise channels", hint="Build it with G.make_noise.")

    def forward(self, onehot: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generate imagery.

        Args:
            onehot: float (B, num_classes + 1, H, W), last channel don't-care; H and W
                multiples of ``downsampling_factor``.
            noise: from :meth:`make_noise`; None draws fresh random noise (torch's RNG).

        Returns:
            (B, out_channels, H, W) in [-1, 1].
        """
        self._check(onehot, noise)
        cfg = self.config
        cond = onehot[:, : cfg.label_channels]
        texture = field = None
        if self.noise_channels:
            if noise is None:
                b, _, h, w = onehot.shape
                cfg = self.config
                noise = noise_lib.random_noise(b, h, w, style_channels=cfg.noise_dim,
                                               spatial_channels=cfg.noise_spatial,
                                               field_channels=cfg.field_input_channels,
                                               field_spacing=self._field_spacing,
                                               texture_channels=cfg.noise_texture,
                                               device=onehot.device, dtype=onehot.dtype)
            # noise_channels counts the style, spatial, field and texture channels: some are
            # drawn.
            assert noise is not None
            start = cfg.noise_dim + cfg.noise_spatial  # the field channels' first
            # Before the cast: segment keys in half precision would tie across fields.
            field = self._field_tones(onehot, noise[:, start : start + cfg.field_input_channels])
            noise = noise.to(onehot.dtype)
            n = cfg.cond_noise_channels
            texture = noise[:, start + cfg.field_input_channels:] if cfg.noise_texture else None
            if n:
                cond = torch.cat([cond, self._noise_by_class(cond, noise[:, :n])], dim=1)
        k = cfg.num_upsampling
        x = self.head(self._downsample(cond, 2**k))
        for j, stage in enumerate(self.stages):
            if j:
                x = self._upsample(x)
            level = self._downsample(cond, 2 ** (k - j))
            labels = level[:, : cfg.label_channels]
            scales = cast(nn.ModuleList, self.texture_scales[j])
            grain = self._texture_at(texture, k - j) if len(scales) else None
            looks = cast(nn.ModuleList, self.field_scales[j])
            pairs = self._field_pairs(cond, labels, field, 2 ** (k - j)) if len(looks) else None
            for i, block in enumerate(cast(nn.ModuleList, stage)):  # stages are ModuleLists
                x = block(x, level)
                if grain is not None:
                    x = x + scales[i](labels) * grain
                if pairs is not None:
                    x = x + looks[i](pairs)
        return torch.tanh(self.to_image(F.leaky_relu(x, 0.2)))

    def _field_tones(self, onehot: torch.Tensor, field: torch.Tensor) -> torch.Tensor | None:
        """The field noise added to the features (None in the "norms" mode or without any):
        the lattice noise as it is, or in the "segments" mode the per-field tones of the keys."""
        cfg = self.config
        if cfg.noise_field_mode == "norms" or not cfg.noise_field:
            return None
        if cfg.noise_field_mode == "features":
            return field.to(onehot.dtype)
        tones = noise_lib.segment_tones(field, onehot.argmax(dim=1), cfg.noise_field_spacing,
                                        cfg.noise_field)
        return tones.to(onehot.dtype)

    def _field_pairs(self, cond: torch.Tensor, level: torch.Tensor, field: torch.Tensor | None,
                     factor: int) -> torch.Tensor | None:
        """Every (class, field channel) product at 1 / factor of full resolution, class-major,
        for :class:`FieldScale` (``field_pool``): "cell" multiplies the labels at that
        resolution (``level``) by each cell's mean field noise; "class" averages each class's
        noise over that class's own pixels of the cell (times its share of the cell), so a
        roof keeps its own tone beside a lawn's. Cells are anchored at global pixel multiples
        of ``factor``, so tiling stays exact."""
        if field is None:
            return None
        if self.config.field_pool == "cell" or factor == 1:
            pooled = field if factor == 1 else F.avg_pool2d(field, factor)
            return (level[:, :, None] * pooled[:, None]).flatten(1, 2)
        labels = cond[:, : self.config.label_channels]
        # One class at a time: all products at full resolution would not fit a large tile.
        return torch.cat([F.avg_pool2d(labels[:, c : c + 1] * field, factor)
                          for c in range(labels.shape[1])], dim=1)

    def _texture_at(self, texture: torch.Tensor | None, depth: int) -> torch.Tensor | None:
        """Texture noise channel ``depth`` at 1 / 2**depth of full resolution, unit variance.

        The mean of each 2**depth cell of per-pixel noise, rescaled: cells are anchored at
        global pixel multiples of 2**depth, so tiles see the same values where they overlap.
        """
        if texture is None:
            return None
        grain = texture[:, depth : depth + 1]
        factor = 2**depth
        return grain if factor == 1 else F.avg_pool2d(grain, factor) * factor

    def _noise_by_class(self, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The noise through the map of each pixel's class (``class_noise``), else as it is.

        Pointwise in the pixel, so generation stays tiling-invariant.
        """
        if self.class_noise is None:
            return noise
        b, n, h, w = noise.shape
        maps = self.class_noise(noise).view(b, labels.shape[1], n, h, w)
        return (maps * labels[:, :, None]).sum(dim=1)

    def _downsample(self, cond: torch.Tensor, factor: int) -> torch.Tensor:
        """The conditioning map at 1 / factor of full resolution.

        Nearest: strided slicing (the published sampling). Bilinear: the mean of each
        factor x factor cell, centred on the cell like the bilinear upsampling that follows.
        Both keep each resolution's grid anchored at global pixel multiples of ``factor``.
        """
        if factor == 1:
            return cond
        if self.config.upsample != "nearest":
            return F.avg_pool2d(cond, factor)
        return cond[..., ::factor, ::factor]

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        mode = self.config.upsample
        if mode == "nearest":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return binomial_blur(x) if mode == "smooth" else x


class TextureScale(nn.Module):
    """The weight of the texture noise per class and feature channel: a 1x1 map of the
    one-hot labels (a table lookup), zero at the start.

    The table is stored divided by ``gain`` (the equalised learning rate of Karras et al.):
    Adam moves a weight by about the learning rate per step, which would leave a table that
    starts at zero near zero for thousands of steps; the gain lets it reach the real
    imagery's texture within a short run.

    Args:
        classes: one-hot channels of the labels.
        channels: feature channels the noise is added to.
        gain: the factor between the stored table and the weights used.
    """

    def __init__(self, classes: int, channels: int, gain: float = TEXTURE_GAIN):
        super().__init__()
        self.gain = gain
        self.weight = nn.Parameter(torch.zeros(channels, classes, 1, 1))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W): each pixel's class's weights."""
        return F.conv2d(labels, self.weight * self.gain)


class FieldScale(nn.Module):
    """Field noise mapped to feature channels by each pixel's class: a matrix per class
    (classes x field channels -> feature channels), zero at the start, stored divided by
    ``gain`` like :class:`TextureScale`'s table.

    Args:
        classes: one-hot channels of the labels.
        fields: field noise channels.
        channels: feature channels the mapped noise is added to.
        gain: the factor between the stored weights and the weights used.
    """

    def __init__(self, classes: int, fields: int, channels: int, gain: float = TEXTURE_GAIN):
        super().__init__()
        self.gain = gain
        self.weight = nn.Parameter(torch.zeros(channels, classes * fields, 1, 1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """(B, channels, H, W) from the class-major (class, field channel) products
        (B, classes * fields, H, W): one map per class of that class's field noise."""
        return F.conv2d(pairs, self.weight * self.gain)


def binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """Each channel convolved with the 3x3 binomial kernel [1, 2, 1] x [1, 2, 1] / 16.

    After a bilinear 2x upsampling, differences between neighbouring pixels alternate in size
    (larger where two coarse cells meet) wherever the coarse features vary from cell to cell;
    stacked over k upsamplings that is a faint grid every 2**k pixels. The blur mixes each
    difference with its neighbours', evening them out.
    """
    c = x.shape[1]
    taps = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (taps[:, None] * taps[None, :] / 16).expand(c, 1, 3, 3).contiguous()
    return F.conv2d(x, kernel, padding=1, groups=c)


def build_generator(cfg: ModelConfig) -> SpadeGenerator:
    """The generator described by ``cfg``."""
    return SpadeGenerator(cfg)
