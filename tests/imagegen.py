"""Generated test pictures for perceptual hashing (PDQ), made in memory with numpy and Pillow.

    img = structured_image(7)                  # 512x384 RGB, the same for the same seed
    resized(img, 0.5), resized(img, 1.5)       # near-duplicates of it
    recompressed(img, quality=50)              # decoded from a JPEG made in memory
    cropped(img, 0.05)                         # 5% of the width and height cut off the edges

Random noise is a bad test picture: PDQ blurs it away, so its hash says little and its quality
is low. These pictures are smooth and structured instead (a few low-frequency waves, a colour
gradient and some soft-edged shapes), which gives PDQ quality 100 and hashes that survive
resizing, recompression and slight cropping, while two seeds give unrelated hashes.

Nothing here touches the disk; tests save what they need into their own tmp_path.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def structured_image(seed: int, size: tuple[int, int] = (512, 384)) -> Image.Image:
    """A smooth, structured RGB picture of `size` (width, height), determined by `seed`."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x /= width
    y /= height
    planes = np.zeros((height, width, 3))
    for c in range(3):
        # a few waves of 0.5 to 3.5 cycles across the picture, in random directions
        for _ in range(5):
            angle = rng.uniform(0, np.pi)
            cycles = rng.uniform(0.5, 3.5)
            phase = rng.uniform(0, 2 * np.pi)
            amp = rng.uniform(0.3, 1.0)
            planes[..., c] += amp * np.sin(
                2 * np.pi * cycles * (np.cos(angle) * x + np.sin(angle) * y) + phase
            )
        # plus a gradient in a random direction
        gx, gy = rng.uniform(-1.5, 1.5, 2)
        planes[..., c] += gx * x + gy * y
    lo, hi = planes.min(axis=(0, 1)), planes.max(axis=(0, 1))
    base = ((planes - lo) / (hi - lo) * 255).astype(np.uint8)
    img = Image.fromarray(base, "RGB")

    # a few large shapes in strong colours, blurred a little so their edges are soft
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(4, 8))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx = rng.uniform(0.08, 0.25) * width
        ry = rng.uniform(0.08, 0.25) * height
        colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(150, 256)),)
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - ry), (cx + rx, cy + ry), (cx - rx, cy + ry)], fill=colour)
    layer = layer.filter(ImageFilter.GaussianBlur(radius=max(1.0, width / 256)))
    img.paste(layer, (0, 0), layer)
    return img


def resized(img: Image.Image, factor: float) -> Image.Image:
    """A copy scaled by `factor` in both directions (0.5 = half size)."""
    w, h = img.size
    return img.resize(
        (max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS
    )


def recompressed(img: Image.Image, quality: int = 50) -> Image.Image:
    """The picture after a round trip through a JPEG of `quality`, in memory."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def cropped(img: Image.Image, fraction: float = 0.05) -> Image.Image:
    """A copy with `fraction` of the width and of the height cut off, half from each edge
    (0.05: 2.5% off the left, right, top and bottom)."""
    w, h = img.size
    dx, dy = round(w * fraction / 2), round(h * fraction / 2)
    return img.crop((dx, dy, w - dx, h - dy))


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    """The picture encoded as JPEG, for tests that need a file's bytes."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    """The picture encoded as PNG (lossless), for tests that need a file's bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
