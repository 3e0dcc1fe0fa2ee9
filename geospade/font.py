"""A 5 x 7 pixel bitmap font for labelling pictures (sample grids, evaluation panels).

geospade draws its pictures with numpy and writes them with GDAL's PNG driver; this font
lets those pictures carry column headings without an imaging library. It covers lowercase letters (uppercase is drawn
as lowercase), digits, space and ``-._:/()|%+``; other characters are drawn as blanks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GLYPH_WIDTH, GLYPH_HEIGHT = 5, 7
SPACING = 1  # blank columns between characters

_GLYPHS: dict[str, tuple[str, ...]] = {
    "a": ("     ", "     ", " ### ", "    #", " ####", "#   #", " ####"),
    "b": ("#    ", "#    ", "#### ", "#   #", "#   #", "#   #", "#### "),
    "c": ("     ", "     ", " ####", "#    ", "#    ", "#    ", " ####"),
    "d": ("    #", "    #", " ####", "#   #", "#   #", "#   #", " ####"),
    "e": ("     ", "     ", " ### ", "#   #", "#####", "#    ", " ####"),
    "f": ("  ## ", " #   ", "#### ", " #   ", " #   ", " #   ", " #   "),
    "g": ("     ", "     ", " ####", "#   #", " ####", "    #", " ### "),
    "h": ("#    ", "#    ", "#### ", "#   #", "#   #", "#   #", "#   #"),
    "i": ("  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### "),
    "j": ("   # ", "     ", "  ## ", "   # ", "   # ", "#  # ", " ##  "),
    "k": ("#    ", "#    ", "#  # ", "# #  ", "##   ", "# #  ", "#  # "),
    "l": (" ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "m": ("     ", "     ", "## # ", "# # #", "# # #", "# # #", "# # #"),
    "n": ("     ", "     ", "#### ", "#   #", "#   #", "#   #", "#   #"),
    "o": ("     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### "),
    "p": ("     ", "     ", "#### ", "#   #", "#### ", "#    ", "#    "),
    "q": ("     ", "     ", " ####", "#   #", " ####", "    #", "    #"),
    "r": ("     ", "     ", "# ## ", "##   ", "#    ", "#    ", "#    "),
    "s": ("     ", "     ", " ####", "#    ", " ### ", "    #", "#### "),
    "t": (" #   ", " #   ", "#### ", " #   ", " #   ", " #  #", "  ## "),
    "u": ("     ", "     ", "#   #", "#   #", "#   #", "#   #", " ####"),
    "v": ("     ", "     ", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "w": ("     ", "     ", "#   #", "# # #", "# # #", "# # #", " # # "),
    "x": ("     ", "     ", "#   #", " # # ", "  #  ", " # # ", "#   #"),
    "y": ("     ", "     ", "#   #", "#   #", " ####", "    #", " ### "),
    "z": ("     ", "     ", "#####", "   # ", "  #  ", " #   ", "#####"),
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
    " ": ("     ",) * 7,
    "-": ("     ", "     ", "     ", " ### ", "     ", "     ", "     "),
    "+": ("     ", "  #  ", "  #  ", "#####", "  #  ", "  #  ", "     "),
    ".": ("     ", "     ", "     ", "     ", "     ", " ##  ", " ##  "),
    "_": ("     ", "     ", "     ", "     ", "     ", "     ", "#####"),
    ":": ("     ", " ##  ", " ##  ", "     ", " ##  ", " ##  ", "     "),
    "/": ("    #", "    #", "   # ", "  #  ", " #   ", "#    ", "#    "),
    "(": ("   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # "),
    ")": (" #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   "),
    "|": ("  #  ",) * 7,
    "%": ("##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##"),
}
_BITMAPS = {c: np.array([[ch == "#" for ch in row] for row in rows], bool)
            for c, rows in _GLYPHS.items()}


def text_width(text: str, scale: int = 1) -> int:
    """Width in pixels of ``text`` drawn at ``scale``."""
    if not text:
        return 0
    return scale * (len(text) * (GLYPH_WIDTH + SPACING) - SPACING)


def render_text(text: str, scale: int = 1) -> np.ndarray:
    """A bool (7 * scale, width) mask of ``text``, True where ink is."""
    blank = np.zeros((GLYPH_HEIGHT, GLYPH_WIDTH), bool)
    mask = np.zeros((GLYPH_HEIGHT, max(text_width(text), 0)), bool)
    for i, char in enumerate(text.lower()):
        x = i * (GLYPH_WIDTH + SPACING)
        mask[:, x:x + GLYPH_WIDTH] = _BITMAPS.get(char, blank)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else mask


def fit_text(text: str, width: int) -> tuple[str, int]:
    """The text (shortened if it must be) and the largest scale (1 to 3) that fit ``width``."""
    for scale in (3, 2, 1):
        if text_width(text, scale) <= width:
            return text, scale
    chars = max(0, (width + SPACING) // (GLYPH_WIDTH + SPACING))
    return text[:chars], 1


def heading_strip(labels: Sequence[str], widths: Sequence[int], gap: int,
                  ink: int = 0, fill: int = 255, padding: int = 3) -> np.ndarray:
    """A (3, h, W) uint8 strip with each label centred over its column.

    Args:
        labels: one heading per column.
        widths: the columns' widths in pixels, left to right.
        gap: pixels between neighbouring columns.
        ink, fill: text and background grey levels.
        padding: blank rows above and below the text.
    """
    fitted = [fit_text(text, w) for text, w in zip(labels, widths, strict=True)]
    scale = min(s for _, s in fitted) if fitted else 1  # one text size across the strip
    height = GLYPH_HEIGHT * scale + 2 * padding
    total = sum(widths) + gap * max(len(widths) - 1, 0)
    strip = np.full((3, height, total), fill, np.uint8)
    x = 0
    for (text, _), w in zip(fitted, widths, strict=True):
        chars = max(0, (w // scale + SPACING) // (GLYPH_WIDTH + SPACING))
        mask = render_text(text[:chars], scale)
        left = x + (w - mask.shape[1]) // 2
        strip[:, padding:padding + mask.shape[0], left:left + mask.shape[1]][:, mask] = ink
        x += w + gap
    return strip
