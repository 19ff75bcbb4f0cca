"""Hashing of pictures and videos on the local machine (triage.hashing, `centre victims hash`).

Test pictures come from tests.imagegen: smooth, structured, PDQ quality near 100.

PDQ and cropping: PDQ tolerates only very slight crops. On these pictures (40 seeds), cutting
2% of the width and height (1% per edge) stays within 31 (at most 28); 3% already exceeds it
for about a quarter of the pictures, 5% (2.5% per edge) for almost all (median 44, up to 64).
So the crop tested here is 2%; do not expect 5% crops to cluster.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pdqhash
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.imagegen import cropped, jpeg_bytes, png_bytes, recompressed, resized, structured_image
from triage.hashing import HashingError, hash_file, hash_paths, pdq_distance, pdq_from_image
from victims.cli import victims_app

ROOT = Path(__file__).resolve().parents[2]
NEAR = 31  # PDQ distance at or below which two pictures are the same (triage.signals.PDQ)
MP4_HEADER = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00\x00\x00\x08free"


def _files(root: Path) -> set[Path]:
    return {Path(dirpath, f) for dirpath, _dirs, files in os.walk(root) for f in files}


def _fake_mp4(path: Path, size: int = 3 * (1 << 20) + 123) -> bytes:
    """Bytes that look like an MP4 (ftyp box first), larger than one read chunk."""
    data = MP4_HEADER + np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes()
    path.write_bytes(data)
    return data


# ---------------------------------------------------------------------------------------------
# PDQ bit order


def test_pdq_hex_is_the_reference_bit_order() -> None:
    """Rebuild the reference Hash256 from pdqhash's float output the way Meta's C++ does
    (bit i*16+j set when DCT[i][j] > median; hex = words w[15]..w[0]) and compare."""
    arr = np.asarray(structured_image(3).convert("RGB"))
    floats, _q = pdqhash.compute_float(arr)
    dct = np.asarray(floats)[::-1].reshape(16, 16)  # pdqhash reverses the flat 16x16 buffer
    median = np.sort(dct.ravel())[127]
    words = [0] * 16
    for i in range(16):
        for j in range(16):
            if dct[i, j] > median:
                k = i * 16 + j
                words[k >> 4] |= 1 << (k & 15)
    reference_hex = "".join(f"{words[w]:04x}" for w in range(15, -1, -1))
    mine, _ = pdq_from_image(structured_image(3))
    assert mine == reference_hex
    # and python-threatexchange's conversion of the same vector gives the same string
    vector, _ = pdqhash.compute(arr)
    te = "%0*x" % (64, int("".join(str(int(b)) for b in vector), 2))
    assert mine == te


def test_pdq_distance() -> None:
    a = "0" * 64
    assert pdq_distance(a, a) == 0
    assert pdq_distance(a, "f" * 64) == 256
    assert pdq_distance(a, "8" + "0" * 62 + "1") == 2
    assert pdq_distance("AB" * 32, "ab" * 32) == 0
    with pytest.raises(ValueError):
        pdq_distance(a, "0" * 63)
    with pytest.raises(ValueError):
        pdq_distance(a, "g" * 64)


# ---------------------------------------------------------------------------------------------
# Pictures


def test_image_record_and_exact_hashes(tmp_path: Path) -> None:
    data = png_bytes(structured_image(1))
    path = tmp_path / "deep" / "folder" / "picture.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    rec = hash_file(path)
    assert set(rec) == {"file", "media_type", "sha256", "md5", "pdq", "pdq_quality"}
    assert rec["file"] == "picture.png"  # the name only, never the folder
    assert rec["media_type"] == "image"
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["md5"] == hashlib.md5(data).hexdigest()
    assert len(rec["pdq"]) == 64 and int(rec["pdq"], 16) >= 0 and rec["pdq"] == rec["pdq"].lower()
    assert type(rec["pdq_quality"]) is int and rec["pdq_quality"] >= 80
    # the file's PDQ is that of the decoded picture
    assert (rec["pdq"], rec["pdq_quality"]) == pdq_from_image(structured_image(1))


def test_pictures_are_recognised_in_a_fresh_process(tmp_path: Path) -> None:
    """Pillow registers most formats lazily; hashing must not depend on another import (as
    the generator here) having registered them first."""
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(structured_image(6)))
    (tmp_path / "b.png").write_bytes(png_bytes(structured_image(7)))
    code = (
        "import sys, orjson; from triage.hashing import hash_paths; "
        "[print(orjson.dumps(r).decode()) for r in hash_paths(sys.argv[1:])]"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    recs = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert [(r["file"], r["media_type"]) for r in recs] == [("a.jpg", "image"), ("b.png", "image")]
    assert all(r["pdq_quality"] >= 80 for r in recs)


def test_detection_is_by_content_not_extension(tmp_path: Path) -> None:
    jpeg_as_txt = tmp_path / "notes.txt"
    jpeg_as_txt.write_bytes(jpeg_bytes(structured_image(2)))
    assert hash_file(jpeg_as_txt)["media_type"] == "image"
    text_as_jpg = tmp_path / "holiday.jpg"
    text_as_jpg.write_text("not a picture at all\n" * 20)
    with pytest.raises(HashingError) as exc:
        hash_file(text_as_jpg)
    assert "holiday.jpg" in str(exc.value)
    assert exc.value.path == text_as_jpg


@pytest.mark.parametrize("seed", range(6))
def test_near_duplicates_are_within_31(tmp_path: Path, seed: int) -> None:
    img = structured_image(seed)
    variants = {
        "original.png": png_bytes(img),
        "half.png": png_bytes(resized(img, 0.5)),
        "bigger.png": png_bytes(resized(img, 1.5)),
        "q40.jpg": jpeg_bytes(img, quality=40),
        "q70.jpg": jpeg_bytes(img, quality=70),
        "cropped.png": png_bytes(cropped(img, 0.02)),
    }
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
    recs = {r["file"]: r for r in hash_paths([tmp_path])}
    assert set(recs) == set(variants)
    original = recs["original.png"]["pdq"]
    distances = {n: pdq_distance(original, r["pdq"]) for n, r in recs.items()}
    assert distances["original.png"] == 0
    assert all(d <= NEAR for d in distances.values()), distances
    assert all(r["pdq_quality"] >= 80 for r in recs.values())
    # the in-memory recompression helper agrees with a JPEG file
    assert pdq_distance(original, pdq_from_image(recompressed(img, 50))[0]) <= NEAR


def test_unrelated_pictures_are_farther_than_31() -> None:
    hashes = [pdq_from_image(structured_image(seed))[0] for seed in range(8)]
    distances = [pdq_distance(a, b) for a, b in itertools.combinations(hashes, 2)]
    assert len(distances) == 28
    assert min(distances) > NEAR, sorted(distances)


def test_image_modes_are_hashed_as_rgb(tmp_path: Path) -> None:
    img = structured_image(4)
    base, _ = pdq_from_image(img)
    for mode in ("L", "RGBA", "P"):
        path = tmp_path / f"{mode}.png"
        img.convert(mode).save(path)
        assert pdq_distance(base, hash_file(path)["pdq"]) <= NEAR


def test_flat_and_tiny_pictures_have_low_quality(tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.new("RGB", (16, 16), (120, 60, 200)).save(flat)
    rec = hash_file(flat)
    assert rec["media_type"] == "image" and rec["pdq_quality"] == 0  # pdqhash gives 0
    big_flat = tmp_path / "big_flat.png"
    Image.new("RGB", (512, 384), (10, 200, 30)).save(big_flat)
    assert hash_file(big_flat)["pdq_quality"] == 0
    tiny = tmp_path / "tiny.png"  # under 5 pixels: the reference gives up (zero hash)
    structured_image(5, size=(4, 4)).save(tiny)
    rec = hash_file(tiny)
    assert rec["pdq_quality"] == 0 and rec["pdq"] == "0" * 64


# ---------------------------------------------------------------------------------------------
# Videos and other files


def test_fake_mp4_is_a_video_with_exact_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "clip.bin"  # the extension does not matter
    data = _fake_mp4(path)
    rec = hash_file(path)
    assert rec == {
        "file": "clip.bin",
        "media_type": "video",
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }


@pytest.mark.parametrize(
    "header",
    [
        b"\x1a\x45\xdf\xa3" + b"\x00" * 60,  # Matroska / WebM
        b"RIFF\x00\x10\x00\x00AVI LIST" + b"\x00" * 60,  # AVI
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",  # QuickTime
        b"\x00\x00\x01\xba" + b"\x00" * 60,  # MPEG program stream
    ],
)
def test_other_video_containers(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "v"
    path.write_bytes(header + bytes(range(256)) * 4)
    assert hash_file(path)["media_type"] == "video"


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("report.pdf", b"%PDF-1.4\n" + b"x" * 500, "not a picture or video"),
        ("empty.jpg", b"", "empty file"),
        ("broken.jpg", None, "damaged"),
        ("photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100, "HEIF"),
    ],
)
def test_other_files_are_clear_errors(
    tmp_path: Path, name: str, content: bytes | None, reason: str
) -> None:
    if content is None:
        content = jpeg_bytes(structured_image(0))[:2000]  # a JPEG cut short
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(HashingError) as exc:
        hash_file(path)
    assert name in str(exc.value) and reason in str(exc.value)


def test_missing_path_and_folder_given_as_file(tmp_path: Path) -> None:
    with pytest.raises(HashingError, match="no such file"):
        hash_file(tmp_path / "gone.jpg")
    with pytest.raises(HashingError, match="not a regular file"):
        hash_file(tmp_path)


def test_hash_paths_recurses_and_yields_errors_in_order(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(png_bytes(structured_image(1)))
    (tmp_path / "a" / "b" / "2.jpg").write_bytes(jpeg_bytes(structured_image(2)))
    (tmp_path / "a" / "b" / "3.txt").write_text("hello")
    _fake_mp4(tmp_path / "4.mp4", size=1000)
    out = list(hash_paths([tmp_path / "a", tmp_path / "4.mp4", tmp_path / "missing.png"]))
    assert [r["file"] if isinstance(r, dict) else r.path.name for r in out] == [
        "1.png",
        "2.jpg",
        "3.txt",
        "4.mp4",
        "missing.png",
    ]
    assert [type(r).__name__ for r in out] == [
        "dict",
        "dict",
        "HashingError",
        "dict",
        "HashingError",
    ]


# ---------------------------------------------------------------------------------------------
# Command line


def _case_folder(root: Path) -> dict[str, bytes]:
    files = {
        "one.jpg": jpeg_bytes(structured_image(11)),
        "two.png": png_bytes(structured_image(12)),
        "sub/three.png": png_bytes(resized(structured_image(13), 0.5)),
        "sub/clip.mp4": MP4_HEADER + b"\x01" * 5000,
        "sub/notes.docx": b"PK\x03\x04 this is not media" * 10,
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_cli_hashes_a_folder_to_out_file(tmp_path: Path) -> None:
    case = tmp_path / "case"
    files = _case_folder(case)
    before = _files(tmp_path)
    out = tmp_path / "hashes.jsonl"
    result = CliRunner().invoke(victims_app, ["hash", str(case), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "notes.docx" in result.stderr and "error" in result.stderr
    assert "4 file(s) hashed, 1 could not be" in result.stderr
    recs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by_name = {r["file"]: r for r in recs}
    assert set(by_name) == {"one.jpg", "two.png", "three.png", "clip.mp4"}
    for rel, data in files.items():
        name = Path(rel).name
        if name in by_name:
            assert by_name[name]["sha256"] == hashlib.sha256(data).hexdigest()
            assert by_name[name]["md5"] == hashlib.md5(data).hexdigest()
    assert by_name["clip.mp4"]["media_type"] == "video" and "pdq" not in by_name["clip.mp4"]
    assert by_name["three.png"]["media_type"] == "image"
    assert all("/" not in r["file"] for r in recs)
    # nothing was written anywhere but the --out file; the media are untouched
    assert _files(tmp_path) == before | {out}
    assert all((case / rel).read_bytes() == data for rel, data in files.items())


def test_cli_writes_json_lines_to_stdout_by_default(tmp_path: Path) -> None:
    case = tmp_path / "case"
    files = _case_folder(case)
    before = _files(tmp_path)
    result = CliRunner().invoke(
        victims_app,
        ["hash", str(case / "one.jpg"), str(case / "sub" / "notes.docx"), str(case / "two.png")],
    )
    assert result.exit_code == 1
    recs = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in recs] == ["one.jpg", "two.png"]  # went on after the bad file
    assert recs[0]["sha256"] == hashlib.sha256(files["one.jpg"]).hexdigest()
    assert f"error: {case / 'sub' / 'notes.docx'}:" in result.stderr
    assert _files(tmp_path) == before


def test_cli_all_good_exits_0_and_skips_its_own_out_file(tmp_path: Path) -> None:
    case = tmp_path / "case"
    case.mkdir()
    (case / "a.png").write_bytes(png_bytes(structured_image(21)))
    out = case / "hashes.jsonl"  # a new file inside the folder being hashed
    result = CliRunner().invoke(victims_app, ["hash", str(case), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(x)["file"] for x in out.read_bytes().splitlines()] == ["a.png"]


def test_cli_refuses_to_overwrite_a_file_being_hashed(tmp_path: Path) -> None:
    pic = tmp_path / "a.png"
    data = png_bytes(structured_image(22))
    pic.write_bytes(data)
    result = CliRunner().invoke(victims_app, ["hash", str(pic), "--out", str(pic)])
    assert result.exit_code == 2
    assert "would overwrite" in result.stderr
    assert pic.read_bytes() == data


def test_cli_help_says_pictures_stay_here() -> None:
    result = CliRunner().invoke(victims_app, ["hash", "--help"], terminal_width=100)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "never leave this machine" in text
    assert "--out" in text
