import { MetricsError } from "./errors.js";
import type { Rgb8Image } from "./image.js";

/**
 * The caption check of the built-in toy model (models/toy-flux): its images show one coloured shape on a dark
 * background, described by captions such as "a big red circle on the left". A simple detector reads the shape's
 * colour, kind, size and position back from the pixels, so "does the picture match its caption" becomes a number —
 * the toy model's stand-in for CLIP score. The numbers live in the model's `dataset.json` (written by
 * tools/train-toy/train.py; its `shapes.py` `detect` is the reference this port must agree with).
 */
export interface ShapesSpec {
  readonly imageSize: number;
  /** RGB 0..255 */
  readonly background: readonly [number, number, number];
  /** name → RGB 0..255, in the file's order (ties go to the first) */
  readonly colors: ReadonlyMap<string, readonly [number, number, number]>;
  readonly shapes: readonly string[];
  /** name → anchor (x, y) of the shape's bounding-box centre, pixels */
  readonly positions: ReadonlyMap<string, readonly [number, number]>;
  /** name → the caption words that name it ("on the left") */
  readonly positionPhrases: ReadonlyMap<string, string>;
  /** size words ("small", "big") */
  readonly sizes: readonly string[];
  readonly detector: {
    /** a pixel belongs to the shape when its RGB distance from the background exceeds this */
    readonly maskDistance: number;
    /** fewer mask pixels than this: nothing detected */
    readonly minArea: number;
    /** centroid this far (fraction of box height) below the box centre: a triangle */
    readonly triangleDy: number;
    /** mask fill of its bounding box at least this: a square; at least circleFill: a circle; else a cross */
    readonly squareFill: number;
    readonly circleFill: number;
    /** larger box side at least this many pixels: "big", else "small" */
    readonly bigExtent: number;
  };
}

export interface ShapeDetection {
  readonly color: string | null;
  readonly shape: string | null;
  readonly size: string | null;
  readonly position: string | null;
  /** mask pixels */
  readonly area: number;
  /** mask area / bounding-box area (NaN when nothing was detected) */
  readonly fill: number;
  /** (centroid y − box centre y) / box height (NaN when nothing was detected) */
  readonly dy: number;
  /** [x0, y0, width, height] of the mask, or null */
  readonly bbox: readonly [number, number, number, number] | null;
}

export type ShapeAttribute = "size" | "color" | "shape" | "position";

export interface ShapeCaptionCheck {
  readonly detected: ShapeDetection;
  /** per attribute the caption names: whether the detection agrees */
  readonly matches: Partial<Record<ShapeAttribute, boolean>>;
  /** every named attribute agrees (a caption naming none never matches) */
  readonly ok: boolean;
}

function bad(file: string | undefined, what: string): never {
  throw new MetricsError("E_ARGUMENT", `bad shapes spec: ${what}`, file === undefined ? {} : { file });
}

function num(v: unknown, what: string, file?: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) bad(file, `${what} must be a finite number`);
  return v;
}

function rgb(v: unknown, what: string, file?: string): [number, number, number] {
  if (!Array.isArray(v) || v.length !== 3) bad(file, `${what} must be [r, g, b]`);
  return [num(v[0], what, file), num(v[1], what, file), num(v[2], what, file)];
}

function record(v: unknown, what: string, file?: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(file, `${what} must be an object`);
  return v as Record<string, unknown>;
}

/**
 * Validate the `spec` object of a toy model's dataset.json (snake_case keys, as the Python script writes them).
 * `file` names the source in errors.
 */
export function parseShapesSpec(json: unknown, file?: string): ShapesSpec {
  const s = record(json, "spec", file);
  const imageSize = num(s.image_size, "image_size", file);
  const colors = new Map<string, [number, number, number]>();
  for (const [k, v] of Object.entries(record(s.colors, "colors", file))) colors.set(k, rgb(v, `colors.${k}`, file));
  const positions = new Map<string, [number, number]>();
  for (const [k, v] of Object.entries(record(s.positions, "positions", file))) {
    if (!Array.isArray(v) || v.length !== 2) bad(file, `positions.${k} must be [x, y]`);
    positions.set(k, [num(v[0], `positions.${k}`, file), num(v[1], `positions.${k}`, file)]);
  }
  const positionPhrases = new Map<string, string>();
  for (const [k, v] of Object.entries(record(s.position_phrases, "position_phrases", file))) {
    if (typeof v !== "string" || v.trim() === "") bad(file, `position_phrases.${k} must be a non-empty string`);
    if (!positions.has(k)) bad(file, `position_phrases.${k} names no position`);
    positionPhrases.set(k, v.trim().toLowerCase());
  }
  if (!Array.isArray(s.shapes) || s.shapes.some((x) => typeof x !== "string")) bad(file, "shapes must be strings");
  const shapes = s.shapes as string[];
  for (const need of ["circle", "square", "triangle", "cross"])
    if (!shapes.includes(need)) bad(file, `shapes must include "${need}" (the detector knows these four)`);
  const sizes = Object.keys(record(s.sizes, "sizes", file));
  if (!sizes.includes("small") || !sizes.includes("big")) bad(file, 'sizes must include "small" and "big"');
  if (colors.size === 0 || positions.size === 0) bad(file, "colors and positions must not be empty");
  const d = record(s.detector, "detector", file);
  return {
    imageSize,
    background: rgb(s.background, "background", file),
    colors,
    shapes,
    positions,
    positionPhrases,
    sizes,
    detector: {
      maskDistance: num(d.mask_distance, "detector.mask_distance", file),
      minArea: num(d.min_area, "detector.min_area", file),
      triangleDy: num(d.triangle_dy, "detector.triangle_dy", file),
      squareFill: num(d.square_fill, "detector.square_fill", file),
      circleFill: num(d.circle_fill, "detector.circle_fill", file),
      bigExtent: num(d.big_extent, "detector.big_extent", file),
    },
  };
}

function nearest<T extends readonly number[]>(table: ReadonlyMap<string, T>, point: readonly number[]): string {
  let best = "";
  let bestD = Number.POSITIVE_INFINITY;
  for (const [name, v] of table) {
    let d = 0;
    for (let c = 0; c < point.length; c++) d += (v[c]! - point[c]!) ** 2;
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

/**
 * Read the shape in `img`: mask = pixels farther than maskDistance from the background; colour = the palette entry
 * nearest the mask's mean colour; kind from the mask's fill of its bounding box and the centroid's offset below the
 * box centre (a triangle's centroid sits h/6 below it; a circle fills π/4 of its box, a square all, this cross ≈0.59);
 * size from the box's larger side; position = the anchor nearest the box centre.
 */
export function detectShape(spec: ShapesSpec, img: Rgb8Image): ShapeDetection {
  const { width, height, data } = img;
  if (width !== spec.imageSize || height !== spec.imageSize)
    throw new MetricsError(
      "E_SIZE_MISMATCH",
      `image is ${width}x${height}, the shapes detector expects ${spec.imageSize}x${spec.imageSize}`,
      img.name === undefined ? {} : { file: img.name },
    );
  if (data.length !== width * height * 3)
    throw new MetricsError(
      "E_SHAPE",
      `image data has ${data.length} bytes, expected ${width * height * 3} (RGB)`,
      img.name === undefined ? {} : { file: img.name },
    );
  const [br, bg, bb] = spec.background;
  const t2 = spec.detector.maskDistance ** 2;
  let area = 0;
  let sr = 0;
  let sg = 0;
  let sb = 0;
  let sy = 0;
  let x0 = width;
  let x1 = -1;
  let y0 = height;
  let y1 = -1;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      const r = data[p]!;
      const g = data[p + 1]!;
      const b = data[p + 2]!;
      if ((r - br) ** 2 + (g - bg) ** 2 + (b - bb) ** 2 <= t2) continue;
      area++;
      sr += r;
      sg += g;
      sb += b;
      sy += y + 0.5;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  if (area < spec.detector.minArea)
    return { color: null, shape: null, size: null, position: null, area, fill: Number.NaN, dy: Number.NaN, bbox: null };
  const bw = x1 + 1 - x0;
  const bh = y1 + 1 - y0;
  const fill = area / (bw * bh);
  const dy = (sy / area - (y0 + y1 + 1) / 2) / bh;
  const det = spec.detector;
  const shape =
    dy > det.triangleDy ? "triangle" : fill >= det.squareFill ? "square" : fill >= det.circleFill ? "circle" : "cross";
  return {
    color: nearest(spec.colors, [sr / area, sg / area, sb / area]),
    shape,
    size: Math.max(bw, bh) >= det.bigExtent ? "big" : "small",
    position: nearest(spec.positions, [(x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2]),
    area,
    fill,
    dy,
    bbox: [x0, y0, bw, bh],
  };
}

/** The attributes a caption names (words of the spec's vocabulary; position by its phrase). */
export function parseShapeCaption(spec: ShapesSpec, text: string): Partial<Record<ShapeAttribute, string>> {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  const out: Partial<Record<ShapeAttribute, string>> = {};
  for (const w of words) {
    if (spec.sizes.includes(w)) out.size = w;
    else if (spec.colors.has(w)) out.color = w;
    else if (spec.shapes.includes(w)) out.shape = w;
  }
  const joined = ` ${words.join(" ")} `;
  for (const [pos, phrase] of spec.positionPhrases) if (joined.includes(` ${phrase} `)) out.position = pos;
  return out;
}

/** Detect the shape in `img` and compare it with what `caption` names. */
export function checkShapeCaption(spec: ShapesSpec, img: Rgb8Image, caption: string): ShapeCaptionCheck {
  const detected = detectShape(spec, img);
  const want = parseShapeCaption(spec, caption);
  const matches: Partial<Record<ShapeAttribute, boolean>> = {};
  for (const k of Object.keys(want) as ShapeAttribute[]) matches[k] = detected[k] === want[k];
  const named = Object.values(matches);
  return { detected, matches, ok: named.length > 0 && named.every(Boolean) };
}
