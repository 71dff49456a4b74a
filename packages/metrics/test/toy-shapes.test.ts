// The caption check of the built-in toy model (models/toy-flux, made by tools/train-toy/train.py): the TypeScript
// detector must agree with the Python one (shapes.py `detect`, whose results samples.json records), read rendered
// training scenes and the model's generated samples as their captions, and reject wrong captions.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkShapeCaption,
  detectShape,
  MetricsError,
  parseShapeCaption,
  parseShapesSpec,
  type Rgb8Image,
  readImage,
  type ShapeDetection,
  type ShapesSpec,
} from "../src/index.js";

const model = join(import.meta.dirname, "../../../models/toy-flux");
const dataset = JSON.parse(readFileSync(join(model, "dataset.json"), "utf8"));
const spec = parseShapesSpec(dataset.spec, "dataset.json");

interface Row {
  file: string;
  prompt: string;
  detected: {
    color: string | null;
    shape: string | null;
    size: string | null;
    position: string | null;
    area: number;
    fill: number;
    dy: number;
    bbox: number[];
  };
  match: Record<string, boolean>;
}
const listing = JSON.parse(readFileSync(join(model, "samples/samples.json"), "utf8")) as {
  samples: Row[];
  data: Row[];
};

function expectSameDetection(ts: ShapeDetection, py: Row["detected"]): void {
  expect([ts.color, ts.shape, ts.size, ts.position, ts.area]).toEqual([
    py.color,
    py.shape,
    py.size,
    py.position,
    py.area,
  ]);
  expect(ts.bbox).toEqual(py.bbox);
  // Python rounds fill and dy to 4 decimals
  expect(Math.abs(ts.fill - py.fill)).toBeLessThanOrEqual(5.1e-5);
  expect(Math.abs(ts.dy - py.dy)).toBeLessThanOrEqual(5.1e-5);
}

/** A 64x64 image with one hard-edged (no anti-aliasing) shape drawn by an inside test, independent of Python. */
function draw(
  s: ShapesSpec,
  inside: (x: number, y: number) => boolean,
  rgb: readonly [number, number, number],
): Rgb8Image {
  const n = s.imageSize;
  const data = new Uint8Array(n * n * 3);
  for (let y = 0; y < n; y++)
    for (let x = 0; x < n; x++) {
      const c = inside(x + 0.5, y + 0.5) ? rgb : s.background;
      data.set(c, (y * n + x) * 3);
    }
  return { width: n, height: n, data, name: "drawn" };
}

describe("toy-shapes detector (models/toy-flux)", () => {
  it("parses captions into the attributes they name", () => {
    expect(parseShapeCaption(spec, "a big red circle on the left")).toEqual({
      size: "big",
      color: "red",
      shape: "circle",
      position: "left",
    });
    expect(parseShapeCaption(spec, "A Yellow Cross")).toEqual({ color: "yellow", shape: "cross" });
    expect(parseShapeCaption(spec, "a blue triangle at the top")).toEqual({
      color: "blue",
      shape: "triangle",
      position: "top",
    });
    expect(parseShapeCaption(spec, "")).toEqual({});
  });

  it.each(listing.data)("reads the rendered training scene $file as its full caption", async (row) => {
    const r = checkShapeCaption(spec, await readImage(join(model, row.file)), row.prompt);
    expect(r.matches).toEqual(row.match);
    expect(r.ok).toBe(true);
    expectSameDetection(r.detected, row.detected);
  });

  it.each(listing.samples)("agrees with the Python detector on the generated $file ($prompt)", async (row) => {
    const r = checkShapeCaption(spec, await readImage(join(model, row.file)), row.prompt);
    expectSameDetection(r.detected, row.detected);
    expect(r.matches).toEqual(row.match);
  });

  it("the model's fixed samples show the position their captions name", async () => {
    for (const row of listing.samples) {
      const r = checkShapeCaption(spec, await readImage(join(model, row.file)), row.prompt);
      if (r.matches.position !== undefined)
        expect({ prompt: row.prompt, position: r.matches.position }).toEqual({
          prompt: row.prompt,
          position: true,
        });
    }
  });

  // The committed model (training-log.json: VAE 75 s, transformer 420 s = 11,276 steps on an H100) passes the
  // Python check on 96 random prompts (colour 0.99, shape 0.96, size 1.0, position 1.0; all attributes 0.96). Of the
  // eight fixed samples, seven show everything their captions name; "a big yellow cross" comes out square-ish.
  it("the model's fixed samples show every attribute their captions name, all but at most one", async () => {
    const missed: string[] = [];
    for (const row of listing.samples)
      if (!checkShapeCaption(spec, await readImage(join(model, row.file)), row.prompt).ok) missed.push(row.prompt);
    expect(missed.length, `samples that miss an attribute: ${missed.join("; ")}`).toBeLessThanOrEqual(1);
  });

  it("rejects a caption with another colour or another shape than the one shown", async () => {
    for (const row of listing.samples) {
      const img = await readImage(join(model, row.file));
      const seen = detectShape(spec, img);
      const want = parseShapeCaption(spec, row.prompt);
      const otherColor = [...spec.colors.keys()].find((c) => c !== seen.color)!;
      const otherShape = spec.shapes.find((s) => s !== seen.shape)!;
      const c = checkShapeCaption(spec, img, row.prompt.replace(want.color!, otherColor));
      expect([c.ok, c.matches.color]).toEqual([false, false]);
      const s = checkShapeCaption(spec, img, row.prompt.replace(want.shape!, otherShape));
      expect([s.ok, s.matches.shape]).toEqual([false, false]);
    }
  });

  it("reads hard-edged shapes drawn here (independent of the Python renderer)", () => {
    const red = spec.colors.get("red")!;
    const cyan = spec.colors.get("cyan")!;
    const [lx, ly] = spec.positions.get("left")!;
    const [tx, ty] = spec.positions.get("top")!;
    const [cx, cy] = spec.positions.get("center")!;
    const [bx, by] = spec.positions.get("bottom")!;
    const cases: [Rgb8Image, string][] = [
      [draw(spec, (x, y) => (x - lx) ** 2 + (y - ly) ** 2 <= 14 ** 2, red), "a big red circle on the left"],
      [draw(spec, (x, y) => Math.abs(x - tx) <= 8 && Math.abs(y - ty) <= 8, cyan), "a small cyan square at the top"],
      [
        // apex (cx, cy-13), base corners (cx±13, cy+13)
        draw(spec, (x, y) => y <= cy + 13 && 2 * Math.abs(x - cx) <= y - (cy - 13), red),
        "a big red triangle in the center",
      ],
      [
        draw(
          spec,
          (x, y) =>
            (Math.abs(x - bx) <= 9 && Math.abs(y - by) <= 3.3) || (Math.abs(x - bx) <= 3.3 && Math.abs(y - by) <= 9),
          cyan,
        ),
        "a small cyan cross at the bottom",
      ],
    ];
    for (const [img, caption] of cases) {
      const r = checkShapeCaption(spec, img, caption);
      expect({ caption, ok: r.ok, matches: r.matches }).toEqual({
        caption,
        ok: true,
        matches: Object.fromEntries(Object.keys(parseShapeCaption(spec, caption)).map((k) => [k, true])),
      });
    }
  });

  it("finds nothing on a blank background, and no caption matches it", () => {
    const blank = draw(spec, () => false, [0, 0, 0]);
    const d = detectShape(spec, blank);
    expect([d.color, d.shape, d.area, d.bbox]).toEqual([null, null, 0, null]);
    expect(checkShapeCaption(spec, blank, "a red circle").ok).toBe(false);
  });

  it("names the image and the spec file at fault", () => {
    const small: Rgb8Image = { width: 32, height: 32, data: new Uint8Array(32 * 32 * 3), name: "tiny.png" };
    expect(() => detectShape(spec, small)).toThrow(MetricsError);
    expect(() => detectShape(spec, small)).toThrow(/^tiny\.png: image is 32x32, the shapes detector expects 64x64$/);
    const torn: Rgb8Image = { width: 64, height: 64, data: new Uint8Array(10), name: "torn.png" };
    expect(() => detectShape(spec, torn)).toThrow(/^torn\.png: image data has 10 bytes/);
    const { detector: _drop, ...noDetector } = dataset.spec;
    expect(() => parseShapesSpec(noDetector, "dataset.json")).toThrow(
      /^dataset\.json: bad shapes spec: detector must be an object$/,
    );
    expect(() => parseShapesSpec({ ...dataset.spec, background: [1, 2] }, "d.json")).toThrow(
      /^d\.json: bad shapes spec: background must be \[r, g, b\]$/,
    );
    expect(() => parseShapesSpec({ ...dataset.spec, shapes: ["circle"] }, "d.json")).toThrow(/must include "square"/);
  });
});
