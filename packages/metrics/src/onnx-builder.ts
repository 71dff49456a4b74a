/**
 * A minimal ONNX ModelProto encoder (protobuf wire format, onnx/onnx.proto field numbers) for the small graphs
 * the tests build with the same input/output signatures as the real metric networks. Supports float/int64
 * tensors, initializers, and int/float/ints/floats attributes — nothing more.
 */

/** onnx.proto TensorProto.DataType */
export const ONNX_FLOAT = 1;
export const ONNX_INT64 = 7;

export type OnnxDim = number | string; // fixed size or symbolic (dim_param)

export interface OnnxValueInfo {
  name: string;
  elemType: number;
  shape: OnnxDim[];
}

export interface OnnxInitializer {
  name: string;
  dims: number[];
  /** float32 data (FLOAT) or bigint data (INT64) */
  data: Float32Array | BigInt64Array;
}

export type OnnxAttribute = number | number[] | { ints: number[] } | { float: number };

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attributes?: Record<string, OnnxAttribute>;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  initializers?: OnnxInitializer[];
  /** default opset 13 */
  opset?: number;
}

class Writer {
  private chunks: number[] = [];
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.chunks.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.chunks.push(Number(x));
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }
  int(field: number, v: number | bigint): this {
    return this.tag(field, 0).varint(v);
  }
  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    for (const x of b) this.chunks.push(x);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, w: Writer): this {
    return this.bytes(field, w.finish());
  }
  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(new Float32Array([v]).buffer);
    for (const x of b) this.chunks.push(x);
    return this;
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

function valueInfo(v: OnnxValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.shape) {
    const dim = new Writer();
    if (typeof d === "number") dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new Writer().int(1, v.elemType).message(2, shape);
  const type = new Writer().message(1, tensorType);
  return new Writer().string(1, v.name).message(2, type);
}

function tensor(t: OnnxInitializer): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.data instanceof Float32Array ? ONNX_FLOAT : ONNX_INT64);
  w.string(8, t.name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)); // raw_data, little-endian
  return w;
}

function attribute(name: string, a: OnnxAttribute): Writer {
  const w = new Writer().string(1, name);
  // AttributeProto.AttributeType: FLOAT 1, INT 2, FLOATS 6, INTS 7
  if (typeof a === "number") return w.int(3, a).int(20, 2);
  if (Array.isArray(a)) {
    for (const f of a) w.float(7, f);
    return w.int(20, 6);
  }
  if ("ints" in a) {
    for (const i of a.ints) w.int(8, i);
    return w.int(20, 7);
  }
  return w.float(2, a.float).int(20, 1);
}

/** Encode a graph as a serialized ONNX ModelProto (IR version 8). */
export function encodeOnnxModel(g: OnnxGraph): Uint8Array {
  const graph = new Writer();
  g.nodes.forEach((n, i) => {
    const node = new Writer();
    for (const x of n.inputs) node.string(1, x);
    for (const x of n.outputs) node.string(2, x);
    node.string(3, n.name ?? `${n.opType}_${i}`);
    node.string(4, n.opType);
    for (const [k, v] of Object.entries(n.attributes ?? {})) node.message(5, attribute(k, v));
    graph.message(1, node);
  });
  graph.string(2, g.name);
  for (const t of g.initializers ?? []) graph.message(5, tensor(t));
  for (const v of g.inputs) graph.message(11, valueInfo(v));
  for (const v of g.outputs) graph.message(12, valueInfo(v));
  const opset = new Writer().string(1, "").int(2, g.opset ?? 13);
  return new Writer().int(1, 8).string(2, "svdquant-metrics-test").message(7, graph).message(8, opset).finish();
}
