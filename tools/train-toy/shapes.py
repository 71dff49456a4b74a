"""The toy data set: one coloured shape on a dark background, described by a short caption.

Everything a reader of the generated images needs (palette, anchors, sizes, detector thresholds) is in SPEC and is
written next to the model as dataset.json, so the TypeScript detector (@svdquant/metrics toy-shapes.ts) reads the same
numbers. Rendering is analytic anti-aliasing of signed distances (coverage = clamp(0.5 - d, 0, 1), d in pixels), done
in torch so a training batch is drawn on the GPU.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

SPEC: dict = {
    "image_size": 64,
    "background": [24, 24, 32],
    # Six hues at least 150 apart (RGB Euclidean) so the mean colour of a shape names one of them.
    "colors": {
        "red": [220, 40, 40],
        "green": [40, 190, 60],
        "blue": [50, 90, 230],
        "yellow": [235, 210, 40],
        "magenta": [210, 60, 200],
        "cyan": [40, 200, 210],
    },
    "shapes": ["circle", "square", "triangle", "cross"],
    # Anchor (x, y) of the shape's bounding-box centre, pixels from the top-left corner.
    "positions": {"left": [18, 32], "right": [46, 32], "top": [32, 18], "bottom": [32, 46], "center": [32, 32]},
    "position_phrases": {
        "left": "on the left",
        "right": "on the right",
        "top": "at the top",
        "bottom": "at the bottom",
        "center": "in the center",
    },
    # Half extent r in pixels: circle radius, square half side, triangle/cross half width (bbox 2r x 2r).
    "sizes": {"small": 8.0, "big": 14.0},
    "jitter": {"position": 2.0, "size": 1.0, "color": 12.0},
    # Cross arm half-width as a fraction of r.
    "cross_arm": 0.36,
    # Caption sampling: probability that the size word / the position phrase is left out.
    "drop_size": 0.25,
    "drop_position": 0.25,
    # Detector thresholds (see detect()).
    "detector": {
        "mask_distance": 60.0,
        "min_area": 20,
        "triangle_dy": 0.08,
        "square_fill": 0.9,
        "circle_fill": 0.695,
        "big_extent": 22.0,
    },
}

SIZES = [None, "small", "big"]
POSITIONS = [None, "left", "right", "top", "bottom", "center"]


def caption(size: str | None, color: str, shape: str, position: str | None) -> str:
    words = ["a"] + ([size] if size else []) + [color, shape]
    if position:
        words.append(SPEC["position_phrases"][position])
    return " ".join(words)


def all_captions() -> list[tuple[str, dict]]:
    """Every caption the data set uses, index 0 the empty caption (caption dropout)."""
    out: list[tuple[str, dict]] = [("", {})]
    for size, color, shape, pos in itertools.product(SIZES, SPEC["colors"], SPEC["shapes"], POSITIONS):
        out.append((caption(size, color, shape, pos), {"size": size, "color": color, "shape": shape, "position": pos}))
    return out


def vocabulary() -> list[str]:
    words: list[str] = ["a", "small", "big", *SPEC["colors"], *SPEC["shapes"]]
    for phrase in SPEC["position_phrases"].values():
        for w in phrase.split():
            if w not in words:
                words.append(w)
    return words


def parse_caption(text: str) -> dict:
    """Attributes named by a caption (None where it names none)."""
    words = text.lower().split()
    out: dict = {"size": None, "color": None, "shape": None, "position": None}
    for w in words:
        if w in SPEC["sizes"]:
            out["size"] = w
        elif w in SPEC["colors"]:
            out["color"] = w
        elif w in SPEC["shapes"]:
            out["shape"] = w
    for pos, phrase in SPEC["position_phrases"].items():
        if phrase in " ".join(words):
            out["position"] = pos
    return out


def sample_attributes(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """n random scenes: integer indices into sizes/colors/shapes/positions (real ones, never None)."""
    def ri(k: int) -> torch.Tensor:
        return torch.randint(0, k, (n,), generator=gen)

    return {
        "size": ri(len(SPEC["sizes"])),
        "color": ri(len(SPEC["colors"])),
        "shape": ri(len(SPEC["shapes"])),
        "position": ri(len(SPEC["positions"])),
        "drop_size": torch.rand(n, generator=gen) < SPEC["drop_size"],
        "drop_position": torch.rand(n, generator=gen) < SPEC["drop_position"],
        "u": torch.rand(n, 6, generator=gen),  # jitter: dx, dy, dr, dR, dG, dB
    }


def caption_indices(attrs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Index into all_captions() of each scene's caption (after dropping size/position words)."""
    size_names, pos_names, colors = list(SPEC["sizes"]), list(SPEC["positions"]), list(SPEC["colors"])
    lookup = {c: i for i, (c, _) in enumerate(all_captions())}
    cols = [attrs[k].tolist() for k in ("size", "color", "shape", "position", "drop_size", "drop_position")]
    out = []
    for size, color, shape, pos, drop_size, drop_pos in zip(*cols):
        text = caption(
            None if drop_size else size_names[size],
            colors[color],
            SPEC["shapes"][shape],
            None if drop_pos else pos_names[pos],
        )
        out.append(lookup[text])
    return torch.tensor(out, dtype=torch.long)


def render(attrs: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
    """Scenes -> float images [n, 3, S, S] in 0..255 (not rounded)."""
    s = SPEC["image_size"]
    n = attrs["size"].shape[0]
    u = attrs["u"].to(device)
    anchors = torch.tensor(list(SPEC["positions"].values()), dtype=torch.float32, device=device)
    radii = torch.tensor(list(SPEC["sizes"].values()), dtype=torch.float32, device=device)
    palette = torch.tensor(list(SPEC["colors"].values()), dtype=torch.float32, device=device)
    j = SPEC["jitter"]
    centre = anchors[attrs["position"].to(device)] + (u[:, 0:2] * 2 - 1) * j["position"]
    r = radii[attrs["size"].to(device)] + (u[:, 2] * 2 - 1) * j["size"]
    color = (palette[attrs["color"].to(device)] + (u[:, 3:6] * 2 - 1) * j["color"]).clamp(0, 255)

    coords = torch.arange(s, dtype=torch.float32, device=device) + 0.5
    x = coords[None, None, :] - centre[:, 0, None, None]  # [n, 1, S]
    y = coords[None, :, None] - centre[:, 1, None, None]  # [n, S, 1]
    x, y = torch.broadcast_tensors(x, y)
    rr = r[:, None, None]
    ax, ay = x.abs(), y.abs()
    d_circle = torch.sqrt(x * x + y * y) - rr
    d_square = torch.maximum(ax, ay) - rr
    # Triangle: apex (0, -r), base corners (+-r, r); max of the three edges' signed distances.
    inv5 = 1.0 / np.sqrt(5.0)
    d_tri = torch.maximum(torch.maximum((-2 * x - (y + rr)) * inv5, (2 * x - (y + rr)) * inv5), y - rr)
    w = rr * SPEC["cross_arm"]
    d_cross = torch.minimum(torch.maximum(ax - rr, ay - w), torch.maximum(ax - w, ay - rr))
    d = torch.stack([d_circle, d_square, d_tri, d_cross], 1)  # [n, 4, S, S]
    d = d.gather(1, attrs["shape"].to(device)[:, None, None, None].expand(n, 1, s, s))
    alpha = (0.5 - d).clamp(0, 1)  # [n, 1, S, S]
    bg = torch.tensor(SPEC["background"], dtype=torch.float32, device=device)[None, :, None, None]
    return bg * (1 - alpha) + color[:, :, None, None] * alpha


def detect(img: np.ndarray) -> dict:
    """Read one uint8 RGB image [H, W, 3]: the shape's colour, kind, size and position, plus the features used.

    mask = pixels farther than mask_distance from the background colour; colour = the palette entry nearest the mask's
    mean colour; kind from the mask's fill of its bounding box and the centroid's offset below the box centre
    (a triangle's centroid lies h/6 below it; circle pi/4 fill, square 1, cross ~0.59); size from the box's larger
    extent; position = the anchor nearest the box centre.
    """
    det = SPEC["detector"]
    f = img.astype(np.float64)
    bg = np.array(SPEC["background"], dtype=np.float64)
    dist = np.sqrt(((f - bg) ** 2).sum(-1))
    mask = dist > det["mask_distance"]
    area = int(mask.sum())
    if area < det["min_area"]:
        return {"color": None, "shape": None, "size": None, "position": None, "area": area}
    ys, xs = np.nonzero(mask)
    mean = f[mask].mean(0)
    names = list(SPEC["colors"])
    pal = np.array([SPEC["colors"][c] for c in names], dtype=np.float64)
    color = names[int(np.argmin(((pal - mean) ** 2).sum(-1)))]
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    bw, bh = x1 - x0, y1 - y0
    fill = area / float(bw * bh)
    dy = ((ys + 0.5).mean() - (y0 + y1) / 2) / bh
    if dy > det["triangle_dy"]:
        shape = "triangle"
    elif fill >= det["square_fill"]:
        shape = "square"
    elif fill >= det["circle_fill"]:
        shape = "circle"
    else:
        shape = "cross"
    size = "big" if max(bw, bh) >= det["big_extent"] else "small"
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    pos_names = list(SPEC["positions"])
    anchors = np.array([SPEC["positions"][p] for p in pos_names], dtype=np.float64)
    position = pos_names[int(np.argmin(((anchors - [cx, cy]) ** 2).sum(-1)))]
    return {
        "color": color,
        "shape": shape,
        "size": size,
        "position": position,
        "area": area,
        "fill": round(float(fill), 4),
        "dy": round(float(dy), 4),
        "bbox": [int(x0), int(y0), int(bw), int(bh)],
    }


def matches(det: dict, text: str) -> dict[str, bool]:
    """Per attribute the caption names: does the detection agree?"""
    want = parse_caption(text)
    return {k: det.get(k) == v for k, v in want.items() if v is not None}
