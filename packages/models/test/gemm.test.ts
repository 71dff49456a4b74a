import { matmulF64 } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  attention,
  DenseLinear,
  type GemmBackend,
  gemmNaive,
  gemmTs,
  getGemmBackend,
  ModelError,
  setGemmBackend,
  TS_GEMM,
} from "../src/index.js";
import { geluTanhInPlace } from "../src/ops.js";
import { randn, relErr } from "./helpers.js";

describe("TypeScript GEMM", () => {
  for (const [m, k, n] of [
    [1, 1, 1],
    [4, 256, 4],
    [7, 300, 13],
    [33, 513, 66],
    [5, 3, 2],
  ] as const) {
    it(`Y = X·Wᵀ + b matches float64 (ml: tensor.matmulF64) for M=${m} K=${k} N=${n}`, () => {
      const x = randn(m * k, m * 1000 + k);
      const w = randn(n * k, n * 7 + k);
      const b = randn(n, 3);
      const ref = matmulF64(x, w, m, k, n, { transposeB: true });
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) ref[i * n + j]! += b[j]!;
      const y = new Float32Array(m * n).fill(Number.NaN); // must be fully overwritten
      gemmTs(x, w, b, y, m, k, n);
      expect(relErr(y, ref)).toBeLessThan(1e-6);
      const y2 = new Float32Array(m * n);
      gemmNaive(x, w, undefined, y2, m, k, n);
      const ref2 = matmulF64(x, w, m, k, n, { transposeB: true });
      expect(relErr(y2, ref2)).toBeLessThan(1e-6);
      const y3 = new Float32Array(m * n).fill(Number.NaN);
      gemmTs(x, w, undefined, y3, m, k, n);
      expect(relErr(y3, ref2)).toBeLessThan(1e-6);
    });
  }

  it("rejects mismatched sizes with a clear error", () => {
    expect(() => gemmTs(new Float32Array(6), new Float32Array(6), undefined, new Float32Array(4), 2, 3, 3)).toThrow(
      /W has 6 elements, expected N\*K = 3\*3/,
    );
    const l = new DenseLinear("blk.to_q", { dtype: "f32", data: new Float32Array(6) }, undefined, 3, 2);
    expect(() => l.forward(new Float32Array(5), 2)).toThrow(/linear blk.to_q: input of 5 elements is not \[M=2, K=3\]/);
    expect(() => new DenseLinear("x", { dtype: "f32", data: new Float32Array(5) }, undefined, 3, 2)).toThrow(
      ModelError,
    );
  });

  it("backends plug in process-wide and per layer", () => {
    const calls: string[] = [];
    const spy: GemmBackend = {
      name: "spy",
      gemm: (x, w, b, out, m, k, n) => {
        calls.push(`${m}x${k}x${n}`);
        TS_GEMM.gemm(x, w, b, out, m, k, n);
      },
    };
    const w = randn(6, 1);
    const x = randn(3, 2);
    const perLayer = new DenseLinear("l", { dtype: "f32", data: w }, undefined, 3, 2, spy);
    perLayer.forward(x, 1);
    expect(calls).toEqual(["1x3x2"]);
    const old = setGemmBackend(spy);
    try {
      expect(getGemmBackend().name).toBe("spy");
      new DenseLinear("l", { dtype: "f32", data: w }, undefined, 3, 2).forward(x, 1);
      expect(calls.length).toBe(2);
    } finally {
      setGemmBackend(old);
    }
    expect(getGemmBackend()).toBe(TS_GEMM);
    expect(() => setGemmBackend({} as GemmBackend)).toThrow(/gemm\(x, w, bias, out, m, k, n\)/);
  });
});

describe("DenseLinear.prepare", () => {
  it("packs once through the backend's prepare, forwards without re-packing, and runs unprepared on another backend", () => {
    const log: string[] = [];
    // A backend whose "packed form" is a transposed copy of W [K, N]: a different layout, so a forward that
    // skipped the prepared path or used a stale copy would give a different Y.
    const packing: GemmBackend = {
      name: "packing",
      gemm: (x, w, b, out, m, k, n) => {
        log.push("gemm");
        TS_GEMM.gemm(x, w, b, out, m, k, n);
      },
      prepare: (w, b, n, k) => {
        log.push("prepare");
        const wt = new Float32Array(k * n);
        for (let j = 0; j < n; j++) for (let i = 0; i < k; i++) wt[i * n + j] = w[j * k + i]!;
        const bias = b && Float32Array.from(b);
        return {
          n,
          k,
          run: (x, out, m, opts) => {
            log.push(`run ${m}${opts?.gelu ? " gelu" : ""}`);
            for (let r = 0; r < m; r++)
              for (let j = 0; j < n; j++) {
                let s = bias ? bias[j]! : 0;
                for (let i = 0; i < k; i++) s += x[r * k + i]! * wt[i * n + j]!;
                out[r * n + j] = s;
              }
            if (opts?.gelu) geluTanhInPlace(out);
          },
        };
      },
    };
    const [k, n] = [7, 5];
    const w = randn(n * k, 3);
    const bias = randn(n, 4);
    const x = randn(3 * k, 5);
    const want = new DenseLinear("l", { dtype: "f32", data: Float32Array.from(w) }, bias, k, n).forward(x, 3);
    const l = new DenseLinear("l", { dtype: "f32", data: w }, bias, k, n, packing);
    expect(l.isPrepared).toBe(false);
    expect(l.prepare()).toBe(true);
    expect(l.prepare()).toBe(true); // already prepared for this backend: no second packing
    expect(l.isPrepared).toBe(true);
    expect(relErr(l.forward(x, 3), want)).toBeLessThan(1e-6);
    expect(relErr(l.forward(x.subarray(0, k), 1), want.subarray(0, n))).toBeLessThan(1e-6);
    // forwardGelu: the prepared GEMM's epilogue on a prepared layer, forward + TypeScript GELU otherwise
    const wantGelu = geluTanhInPlace(Float32Array.from(want));
    expect(relErr(l.forwardGelu(x, 3), wantGelu)).toBeLessThan(1e-6);
    const plain = new DenseLinear("p", { dtype: "f32", data: w }, bias, k, n, TS_GEMM);
    expect(relErr(plain.forwardGelu(x, 3), wantGelu)).toBeLessThan(1e-6);
    expect(log).toEqual(["prepare", "run 3", "run 1", "run 3 gelu"]);
    // a layer on the process default backend, prepared for it, runs unprepared once the default changes
    const old = setGemmBackend(packing);
    try {
      const d = new DenseLinear("d", { dtype: "f32", data: w }, bias, k, n);
      expect(d.prepare()).toBe(true);
      setGemmBackend(TS_GEMM);
      expect(d.isPrepared).toBe(false);
      expect(relErr(d.forward(x, 3), want)).toBeLessThan(1e-6);
    } finally {
      setGemmBackend(old);
    }
    // the TypeScript backend has no packed form
    expect(new DenseLinear("t", { dtype: "f32", data: w }, bias, k, n, TS_GEMM).prepare()).toBe(false);
  });
});

describe("attention through a backend's own kernel", () => {
  it("hands the whole call to GemmBackend.attention when the backend has one", () => {
    const [b, sq, skv, h, dh] = [2, 5, 7, 3, 4];
    const q = randn(b * sq * h * dh, 1);
    const k = randn(b * skv * h * dh, 2);
    const v = randn(b * skv * h * dh, 3);
    const bias = randn(b * skv, 4);
    const want = attention(q, k, v, b, sq, skv, h, dh, bias);
    const seen: string[] = [];
    const delegating: GemmBackend = {
      name: "delegating",
      gemm: TS_GEMM.gemm,
      attention: (q2, k2, v2, bias2, out, b2, sq2, skv2, h2, dh2) => {
        seen.push(`${b2}x${sq2}x${skv2}x${h2}x${dh2} bias=${bias2 === bias}`);
        const self = setGemmBackend(TS_GEMM); // the TypeScript path computes what a kernel would
        try {
          out.set(attention(q2, k2, v2, b2, sq2, skv2, h2, dh2, bias2, { queryBlock: 2 }));
        } finally {
          setGemmBackend(self);
        }
      },
    };
    const old = setGemmBackend(delegating);
    let got: Float32Array;
    try {
      got = attention(q, k, v, b, sq, skv, h, dh, bias);
    } finally {
      setGemmBackend(old);
    }
    expect(seen).toEqual([`${b}x${sq}x${skv}x${h}x${dh} bias=true`]);
    expect(relErr(got, want)).toBeLessThan(1e-6);
  });
});

describe("blocked attention", () => {
  it("equals a float64 softmax(QKᵀ/√d + bias)V for every query block size", () => {
    const b = 2;
    const sq = 11;
    const skv = 7;
    const h = 3;
    const dh = 8;
    const d = h * dh;
    const q = randn(b * sq * d, 1);
    const k = randn(b * skv * d, 2);
    const v = randn(b * skv * d, 3);
    const bias = Float32Array.from({ length: b * skv }, (_, i) => (i % 4 === 3 ? -10000 : 0.1 * (i % 5)));
    const ref = new Float64Array(b * sq * d);
    for (let bi = 0; bi < b; bi++)
      for (let hh = 0; hh < h; hh++)
        for (let i = 0; i < sq; i++) {
          const s: number[] = [];
          for (let j = 0; j < skv; j++) {
            let dot = 0;
            for (let p = 0; p < dh; p++)
              dot += q[(bi * sq + i) * d + hh * dh + p]! * k[(bi * skv + j) * d + hh * dh + p]!;
            s.push(dot / Math.sqrt(dh) + bias[bi * skv + j]!);
          }
          const mx = Math.max(...s);
          const e = s.map((x) => Math.exp(x - mx));
          const z = e.reduce((a, c) => a + c, 0);
          for (let p = 0; p < dh; p++) {
            let acc = 0;
            for (let j = 0; j < skv; j++) acc += (e[j]! / z) * v[(bi * skv + j) * d + hh * dh + p]!;
            ref[(bi * sq + i) * d + hh * dh + p] = acc;
          }
        }
    for (const block of [1, 2, 4, 11, 64, Number.POSITIVE_INFINITY]) {
      const out = attention(q, k, v, b, sq, skv, h, dh, bias, { queryBlock: block });
      expect(relErr(out, ref)).toBeLessThan(1e-6);
    }
    expect(() => attention(q, k, v, b, sq, skv, h, dh, bias, { queryBlock: 0 })).toThrow(/queryBlock must be >= 1/);
    expect(() => attention(q, k, v, b, sq, skv - 1, h, dh)).toThrow(/q\/k\/v sizes do not fit/);
  });
});
