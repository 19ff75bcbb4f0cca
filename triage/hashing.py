"""Hashes of pictures and videos, computed on the machine where the files are.

    hash_file(Path("IMG_0001.jpg"))
    # {"file": "IMG_0001.jpg", "media_type": "image", "sha256": "…", "md5": "…",
    #  "pdq": "…64 hex…", "pdq_quality": 100}
    hash_file(Path("clip.mp4"))
    # {"file": "clip.mp4", "media_type": "video", "sha256": "…", "md5": "…"}

The files are only ever opened for reading: nothing is copied, converted to another file,
cached or written anywhere. Only the hashes (and the file's name, without its folder) leave
this module.

What a file is comes from its content, never from its extension: a picture is what Pillow opens
in one of `IMAGE_FORMATS`; a video is recognised by the magic bytes of its container
(`video_container`). Anything else raises `HashingError`, which names the file.

PDQ hex: pdqhash returns the 256 bits as a vector whose element i is bit 255 - i of Meta's
reference `Hash256` (bit k = word k // 16, bit k % 16). The reference formats a hash as
w[15], w[14], …, w[0], four hex digits each, i.e. the 256-bit number with bit 255 first, so
packing the vector most significant bit first gives exactly the reference's hex, which is also
what python-threatexchange (`pdq_hasher`) produces from the same vector.

Pictures are converted to RGB before hashing (alpha dropped, grey and palette pictures
expanded), as python-threatexchange does with `force_rgb=True`; EXIF rotation is not applied
(neither the reference nor python-threatexchange apply it); for animated or multi-page files
the first frame is hashed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

CHUNK = 1 << 20  # bytes read at a time for sha256/md5
HEADER = 512  # bytes looked at to recognise a video container

# Raster formats Pillow decodes itself, each recognised by its own magic bytes. Deliberately not
# every format Pillow knows: EPS would run Ghostscript (which writes temporary files), and
# formats without a signature (TGA, …) could take a random file for a picture.
IMAGE_FORMATS = (
    "JPEG",
    "PNG",
    "GIF",
    "WEBP",
    "BMP",
    "DIB",
    "TIFF",
    "AVIF",
    "JPEG2000",
    "PPM",
    "PSD",
    "ICO",
    "QOI",
)

# ISO base media (MP4, MOV, 3GP…) major brands that are not video: HEIF/HEIC/AVIF pictures,
# Canon raw pictures, audio-only MPEG-4.
_ISO_IMAGE_BRANDS = {
    b"heic",
    b"heix",
    b"heim",
    b"heis",
    b"hevc",
    b"hevx",
    b"hevm",
    b"hevs",
    b"mif1",
    b"mif2",
    b"msf1",
    b"avif",
    b"avis",
    b"avci",
    b"jpeg",
    b"crx ",
}
_ISO_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
# Old QuickTime files may start with one of these boxes instead of `ftyp`.
_QUICKTIME_BOXES = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_ASF = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


class HashingError(Exception):
    """A file that could not be hashed; `path` is the file, `reason` says why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def video_container(header: bytes) -> str | None:
    """The video container the first bytes of a file announce, or None."""
    box = header[4:8]
    if box == b"ftyp":
        brand = header[8:12]
        if brand in _ISO_IMAGE_BRANDS or brand in _ISO_AUDIO_BRANDS:
            return None
        return "quicktime" if brand == b"qt  " else "mp4"
    if box in _QUICKTIME_BOXES and int.from_bytes(header[:4], "big") >= 8:
        return "quicktime"
    if header.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"  # also WebM
    if header.startswith(b"RIFF") and header[8:12] in (b"AVI ", b"AVIX", b"AMV "):
        return "avi"
    if header.startswith(b"FLV\x01"):
        return "flv"
    if header.startswith(_ASF):
        return "asf"  # WMV
    if header.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "mpeg"
    if len(header) > 376 and header[0] == header[188] == header[376] == 0x47:
        return "mpeg-ts"
    if len(header) > 388 and header[4] == header[196] == header[388] == 0x47:
        return "mpeg-ts"  # M2TS: 192-byte packets
    if header.startswith(b"OggS") and b"\x80theora" in header:
        return "ogg"
    if header.startswith(b".RMF"):
        return "realmedia"
    return None


def file_digests(path: Path) -> tuple[str, str]:
    """sha256 and md5 of a file's bytes, read in chunks (the file is never loaded whole)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def pdq_from_image(img: Image.Image) -> tuple[str, int]:
    """PDQ hash (64 lower-case hex characters, reference bit order) and quality (0-100) of a
    decoded picture. Below quality 50 the hash says little (flat or tiny pictures)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    vector, quality = pdqhash.compute(arr)
    return _bits_to_hex(vector), int(quality)


def _bits_to_hex(vector: np.ndarray) -> str:
    """pdqhash's 256-element 0/1 vector (reference bit 255 first) as 64 hex characters."""
    bits = np.asarray(vector, dtype=np.uint8)
    if bits.shape != (256,):
        raise ValueError(f"expected 256 bits, got shape {bits.shape}")
    return np.packbits(bits).tobytes().hex()


def pdq_distance(a_hex: str, b_hex: str) -> int:
    """Hamming distance between two PDQ hashes given as 64 hex characters (31 or less: the
    same picture, resized, recompressed or slightly edited)."""
    for h in (a_hex, b_hex):
        if not isinstance(h, str) or len(h) != 64:
            raise ValueError(f"a PDQ hash is 64 hex characters, got {h!r}")
    try:
        return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()
    except ValueError:
        raise ValueError(f"not hexadecimal: {a_hex!r} / {b_hex!r}") from None


def hash_file(path: Path) -> dict:
    """Hashes of one picture or video; raises HashingError for anything else."""
    path = Path(path)
    if not path.exists():
        raise HashingError(path, "no such file")
    if not path.is_file():
        raise HashingError(path, "not a regular file")
    try:
        with open(path, "rb") as f:
            header = f.read(HEADER)
    except OSError as exc:
        raise HashingError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not header:
        raise HashingError(path, "empty file")

    if video_container(header) is not None:
        media_type, pdq = "video", None
    else:
        media_type, pdq = "image", _pdq_of_file(path, header)

    try:
        sha256, md5 = file_digests(path)
    except OSError as exc:
        raise HashingError(path, f"cannot be read ({exc.strerror or exc})") from None
    out: dict = {"file": path.name, "media_type": media_type, "sha256": sha256, "md5": md5}
    if pdq is not None:
        out["pdq"], out["pdq_quality"] = pdq
    return out


def _image_formats() -> list[str]:
    Image.init()  # registers every plugin; Image.OPEN is only partly filled before
    return [f for f in IMAGE_FORMATS if f in Image.OPEN]


def _pdq_of_file(path: Path, header: bytes) -> tuple[str, int]:
    formats = _image_formats()
    try:
        with Image.open(path, formats=formats) as img:
            img.load()
            return pdq_from_image(img)
    except UnidentifiedImageError:
        if header[4:8] == b"ftyp" and header[8:12] in _ISO_IMAGE_BRANDS:
            raise HashingError(
                path,
                "HEIF/HEIC or raw picture that this machine cannot decode "
                f"(brand {header[8:12].decode('latin-1').strip()!r})",
            ) from None
        if header[4:8] == b"ftyp" and header[8:12] in _ISO_AUDIO_BRANDS:
            raise HashingError(path, "audio file, not a picture or video") from None
        raise HashingError(path, "not a picture or video in a format this tool knows") from None
    except Image.DecompressionBombError as exc:
        raise HashingError(path, f"picture too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise HashingError(path, f"damaged or unreadable picture ({exc})") from None


def expand_paths(paths: Iterable[Path | str], skip: Iterable[Path] = ()) -> Iterator[Path]:
    """The files named, and every file under the folders named (recursively, sorted by name,
    without following links to folders). `skip`: files to leave out (e.g. the output file)."""
    skip_real = {os.path.realpath(p) for p in skip}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    if os.path.realpath(f) not in skip_real:
                        yield f
        elif os.path.realpath(p) not in skip_real:
            yield p


def hash_paths(
    paths: Iterable[Path | str], skip: Iterable[Path] = ()
) -> Iterator[dict | HashingError]:
    """`hash_file` for every file named or under a folder named: a dict per file hashed, a
    HashingError (yielded, not raised) per file that could not be, in order."""
    for f in expand_paths(paths, skip):
        try:
            yield hash_file(f)
        except HashingError as exc:
            yield exc
