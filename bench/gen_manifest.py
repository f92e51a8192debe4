"""Generate large manifests (and small valid images) for benchmarks and tests.

Only the standard library: the benchmark must run anywhere the package does. Prompts are
distinct so every job gets its own auto id; jobs carry no ``id`` so the loader's worst
case (hashing every spec) is what gets measured.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import png_bytes

_SUBJECTS = ("a lighthouse", "a red fox", "a paper boat", "a city tram", "an old violin")
_ACTIONS = ("at dawn", "in heavy rain", "under neon lights", "in slow motion", "at night")


def prompt(i: int) -> str:
    """A distinct, realistic-looking prompt for job number ``i``."""
    subject = _SUBJECTS[i % len(_SUBJECTS)]
    action = _ACTIONS[(i // len(_SUBJECTS)) % len(_ACTIONS)]
    return f"Cinematic shot of {subject} {action}, take {i}, shallow depth of field"


def write_images(folder: Path, n: int) -> list[Path]:
    """``n`` small PNGs with distinct colours (so distinct sha256s) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:04d}.png"
        path.write_bytes(png_bytes(16, 9, (i % 256, (i // 256) % 256, 128)))
        paths.append(path)
    return paths


def _image_for(i: int, images: Sequence[Path] | None, base: Path) -> str | None:
    if not images:
        return None
    image = Path(images[i % len(images)])
    try:
        return image.relative_to(base).as_posix()
    except ValueError:
        return str(image.resolve())


def write_csv(
    path: Path, n_rows: int, *, images: list[Path] | None = None, ids: bool = False
) -> Path:
    """A CSV manifest of ``n_rows`` jobs, text-only or cycling over ``images``; with
    ``ids``, each job named by an ``id`` column (``shot-0000001``), as users name them."""
    base = path.absolute().parent
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        head = ["prompt", "image", "aspect_ratio", "durationSeconds"] if images else ["prompt"]
        w.writerow(["id", *head] if ids else head)
        for i in range(n_rows):
            row = [prompt(i), _image_for(i, images, base), "16:9", "8"] if images else [prompt(i)]
            w.writerow([f"shot-{i:07d}", *row] if ids else row)
    return path


def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_yaml(path: Path, n_jobs: int, *, images: list[Path] | None = None) -> Path:
    """A YAML manifest with ``defaults:`` and ``n_jobs`` jobs, text-only or with images."""
    base = path.absolute().parent
    with path.open("w", encoding="utf-8") as f:
        f.write('defaults:\n  aspectRatio: "16:9"\n  durationSeconds: 8\njobs:\n')
        for i in range(n_jobs):
            f.write(f"  - prompt: {_yaml_str(prompt(i))}\n")
            if (image := _image_for(i, images, base)) is not None:
                f.write(f"    image: {_yaml_str(image)}\n")
    return path


if __name__ == "__main__":
    import sys
    import tempfile
    import time

    from batchveo.manifest import read_manifests

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        imgs = write_images(folder / "img", 20)
        for label, make in (("csv", write_csv), ("yaml", write_yaml)):
            for with_images in (False, True):
                path = make(folder / f"bench.{label}", n, images=imgs if with_images else None)
                t0 = time.perf_counter()
                specs = read_manifests([path]).specs
                dt = time.perf_counter() - t0
                kind = "images" if with_images else "text"
                print(f"{label:4} {kind:6} {len(specs):>7} jobs  {dt:6.2f} s")
