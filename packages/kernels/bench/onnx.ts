/**
 * A minimal ONNX ModelProto encoder (protobuf wire format, only the fields the peer graphs need), so the
 * benchmark peers are real ONNX Runtime sessions built in code. Field numbers from onnx/onnx.proto:
 * ModelProto{ir_version=1, opset_import=8, graph=7}, GraphProto{node=1, name=2, initializer=5, input=11, output=12},
 * NodeProto{input=1, output=2, name=3, op_type=4, attribute=5, domain=7}, AttributeProto{name=1, i=3, type=20 (INT=2)},
 * TensorProto{dims=1, data_type=2 (FLOAT=1, UINT8=2, INT8=3), name=8, raw_data=9}, ValueInfoProto{name=1, type=2},
 * TypeProto{tensor_type=1}, TypeProto.Tensor{elem_type=1, shape=2}, TensorShapeProto{dim=1},
 * Dimension{dim_value=1, dim_param=2}, OperatorSetIdProto{domain=1, version=2}.
 */
class Writer {
  private parts: Uint8Array[] = [];
  private len = 0;
  private push(b: Uint8Array) {
    this.parts.push(b);
    this.len += b.length;
  }
  private varint(v: number | bigint) {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n;
    const out: number[] = [];
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) b |= 0x80;
      out.push(b);
    } while (x > 0n);
    this.push(Uint8Array.from(out));
  }
  int(field: number, v: number | bigint) {
    this.varint((field << 3) | 0);
    this.varint(v);
    return this;
  }
  bytes(field: number, b: Uint8Array) {
    this.varint((field << 3) | 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }
  str(field: number, s: string) {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, w: Writer) {
    return this.bytes(field, w.finish());
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

export const ONNX_FLOAT = 1;
export const ONNX_UINT8 = 2;
export const ONNX_INT8 = 3;

export interface Initializer {
  name: string;
  dims: number[];
  type: number;
  data: Float32Array | Uint8Array | Int8Array;
}

export interface NodeSpec {
  op: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  intAttrs?: Record<string, number>;
}

function valueInfo(name: string, elem: number, dims: (number | string)[]): Writer {
  const shape = new Writer();
  for (const d of dims) shape.msg(1, typeof d === "number" ? new Writer().int(1, d) : new Writer().str(2, d));
  const tensor = new Writer().int(1, elem).msg(2, shape);
  return new Writer().str(1, name).msg(2, new Writer().msg(1, tensor));
}

/** Encodes a one-graph ModelProto (ir_version 8, default opset 21 + com.microsoft 1). */
export function encodeModel(spec: {
  nodes: NodeSpec[];
  inputs: { name: string; dims: (number | string)[] }[];
  outputs: { name: string; dims: (number | string)[] }[];
  initializers: Initializer[];
}): Uint8Array {
  const g = new Writer();
  spec.nodes.forEach((n, i) => {
    const w = new Writer();
    for (const s of n.inputs) w.str(1, s);
    for (const s of n.outputs) w.str(2, s);
    w.str(3, `node${i}`).str(4, n.op);
    for (const [k, v] of Object.entries(n.intAttrs ?? {})) w.msg(5, new Writer().str(1, k).int(3, v).int(20, 2));
    if (n.domain) w.str(7, n.domain);
    g.msg(1, w);
  });
  g.str(2, "peer");
  for (const t of spec.initializers) {
    const w = new Writer();
    for (const d of t.dims) w.int(1, d);
    w.int(2, t.type)
      .str(8, t.name)
      .bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    g.msg(5, w);
  }
  for (const v of spec.inputs) g.msg(11, valueInfo(v.name, ONNX_FLOAT, v.dims));
  for (const v of spec.outputs) g.msg(12, valueInfo(v.name, ONNX_FLOAT, v.dims));
  return new Writer()
    .int(1, 8)
    .msg(8, new Writer().str(1, "").int(2, 21))
    .msg(8, new Writer().str(1, "com.microsoft").int(2, 1))
    .msg(7, g)
    .finish();
}

/** Y [M,N] = X [M,K] · B [K,N] (f32 MatMul, MLAS sgemm). `w` is W [N,K] (Linear layout), transposed here. */
export function matmulModel(w: Float32Array, N: number, K: number): Uint8Array {
  const b = new Float32Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) b[k * N + n] = w[n * K + k];
  return encodeModel({
    nodes: [{ op: "MatMul", inputs: ["X", "B"], outputs: ["Y"] }],
    inputs: [{ name: "X", dims: ["M", K] }],
    outputs: [{ name: "Y", dims: ["M", N] }],
    initializers: [{ name: "B", dims: [K, N], type: ONNX_FLOAT, data: b }],
  });
}

/**
 * com.microsoft MatMulNBits, 4 bits, block_size G: B uint8 [N, K/G, G/2] with two consecutive k per byte (low
 * nibble first), unsigned with the default zero point 8; scales f32 [N·K/G]. `codes` are signed INT4 [N,K].
 * accuracy_level 4 lets ORT quantize A to int8 and run integer dot products (its fastest CPU path).
 */
export function matmulNBitsModel(
  codes: Int8Array,
  scales: Float32Array,
  N: number,
  K: number,
  G: number,
  accuracyLevel: number,
): Uint8Array {
  const b = new Uint8Array((N * K) / 2);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k += 2) b[(n * K + k) / 2] = (codes[n * K + k] + 8) | ((codes[n * K + k + 1] + 8) << 4);
  return encodeModel({
    nodes: [
      {
        op: "MatMulNBits",
        domain: "com.microsoft",
        inputs: ["X", "B", "S"],
        outputs: ["Y"],
        intAttrs: { K, N, bits: 4, block_size: G, accuracy_level: accuracyLevel },
      },
    ],
    inputs: [{ name: "X", dims: ["M", K] }],
    outputs: [{ name: "Y", dims: ["M", N] }],
    initializers: [
      { name: "B", dims: [N, K / G, G / 2], type: ONNX_UINT8, data: b },
      { name: "S", dims: [N * (K / G)], type: ONNX_FLOAT, data: scales },
    ],
  });
}

/**
 * com.microsoft DynamicQuantizeMatMul: quantizes A per tensor to uint8 at run time and multiplies it with the int8
 * B [K,N] (per-column scales b_scale [N], zero point 0) through MLAS's integer GEMM (VNNI/AMX where the CPU has
 * them). `codes` are int8 W [N,K] (Linear layout), transposed here; `scales` [N].
 */
export function dynamicQuantizeMatMulModel(codes: Int8Array, scales: Float32Array, N: number, K: number): Uint8Array {
  const b = new Int8Array(K * N);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) b[k * N + n] = codes[n * K + k];
  return encodeModel({
    nodes: [{ op: "DynamicQuantizeMatMul", domain: "com.microsoft", inputs: ["X", "B", "S"], outputs: ["Y"] }],
    inputs: [{ name: "X", dims: ["M", K] }],
    outputs: [{ name: "Y", dims: ["M", N] }],
    initializers: [
      { name: "B", dims: [K, N], type: ONNX_INT8, data: b },
      { name: "S", dims: [N], type: ONNX_FLOAT, data: scales },
    ],
  });
}

/**
 * com.microsoft MultiHeadAttention (CPU): query/key/value [B, S, H·Dh] (heads interleaved along the last axis, as
 * attentionF32), num_heads H, scale 1/√Dh (its default), output [B, Sq, H·Dh].
 */
export function multiHeadAttentionModel(heads: number, d: number): Uint8Array {
  return encodeModel({
    nodes: [
      {
        op: "MultiHeadAttention",
        domain: "com.microsoft",
        inputs: ["Q", "K", "V"],
        outputs: ["Y"],
        intAttrs: { num_heads: heads },
      },
    ],
    inputs: [
      { name: "Q", dims: ["B", "Sq", d] },
      { name: "K", dims: ["B", "Skv", d] },
      { name: "V", dims: ["B", "Skv", d] },
    ],
    outputs: [{ name: "Y", dims: ["B", "Sq", d] }],
    initializers: [],
  });
}
