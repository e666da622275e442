"""One-off: copy scikit-image's bundled sample photos into assets/samples/ as JPEG (quality 92).

scikit-image is a dev dependency only; the app reads the copied files. Run from the repo root:
    python scripts/make_samples.py
Credits and licences are in assets/samples/ATTRIBUTION.md (taken from skimage.data's docstrings).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parent.parent / "assets" / "samples"
PHOTOS = {"cat": data.chelsea, "coffee": data.coffee, "astronaut": data.astronaut, "rocket": data.rocket}


def main() -> None:
    """Write assets/samples/<key>.jpg at the original size."""
    OUT.mkdir(parents=True, exist_ok=True)
    for key, load in PHOTOS.items():
        path = OUT / f"{key}.jpg"
        Image.fromarray(load()).convert("RGB").save(path, "JPEG", quality=92)
        print(f"{path} {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
