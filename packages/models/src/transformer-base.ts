// What the CPU transformers (FluxTransformer, PixArtTransformer) share: the resident head layers, blocks held in
// memory or read per forward from a streaming source (into one reused arena), packing for the GEMM backend, and the
// checking and loading of a block's weights.
import type { TensorSource } from "@svdquant/tensor";
import { type LinearLayer, prepareLayers } from "./linear.js";
import type { ParamSpec } from "./params.js";
import type { LinearFactory } from "./recipe.js";
import { BlockArena, checkSpecs, loadBlockWeights, type WeightSet } from "./weights.js";

/** A transformer block as the base sees it: its linear layers by name. */
export interface TransformerBlock {
  readonly lin: Record<string, LinearLayer>;
}

export abstract class TransformerBase {
  readonly factory: LinearFactory;
  protected readonly head: WeightSet;
  protected readonly headLin: Record<string, LinearLayer> = {};
  /** Streaming: the open checkpoint blocks are read from per forward; undefined when every block is resident. */
  protected readonly source: TensorSource | undefined;
  /** Streaming: the one buffer every block's weights are read into in turn. */
  protected readonly arena = new BlockArena();
  /** Set by `prepare()`: blocks read per forward (streaming) are packed as they are read. */
  private prepareStreamed = false;

  protected constructor(factory: LinearFactory, head: WeightSet, source: TensorSource | undefined) {
    this.factory = factory;
    this.head = head;
    this.source = source;
  }

  /** The blocks held in memory, in forward order (undefined where a streaming model reads the block per forward). */
  protected abstract residentBlocks(): readonly (TransformerBlock | undefined)[];

  /** Release the checkpoint a streaming model reads blocks from (no-op otherwise). */
  async close(): Promise<void> {
    await this.arena.close();
    await this.source?.close();
  }

  /** The resident head layers (embedders, norms, proj_out); blocks' layers are built per block. */
  headLayers(): LinearLayer[] {
    return Object.values(this.headLin);
  }

  /**
   * Packs every resident linear layer once for the GEMM backend now in use (`LinearLayer.prepare`, e.g. the
   * native f32 GEMM's panels), so forwards skip the per-call packing and run GELU in the GEMM epilogue; returns
   * how many layers are now prepared. Call it after choosing the backend (`useKernelsGemm`); forwards on another
   * backend run unprepared. A prepared dense layer holds a packed f32 copy of its weight besides the checkpoint's
   * (memory: + 4 bytes per weight). A streaming model packs each block's layers as the block is read.
   */
  prepare(): number {
    this.prepareStreamed = true;
    const blockLayers = this.residentBlocks().flatMap((blk) => (blk ? Object.values(blk.lin) : []));
    return prepareLayers([...Object.values(this.headLin), ...blockLayers]);
  }

  /** Bytes of the resident weights (head + resident blocks). */
  get residentBytes(): number {
    return this.head.bytes;
  }

  /** A block read from the streaming source for this forward, packed when `prepare()` was called. */
  protected streamed<T extends TransformerBlock>(blk: T): T {
    if (this.prepareStreamed) prepareLayers(Object.values(blk.lin));
    return blk;
  }
}

/** Checks the names and shapes of `count` blocks `${prefix}${i}.` of a source up front (also when streaming). */
export function checkBlocks(
  source: TensorSource,
  factory: LinearFactory,
  params: readonly ParamSpec[],
  prefix: string,
  count: number,
): void {
  for (let i = 0; i < count; i++) checkSpecs(source, factory.requiredSpecs(params, `${prefix}${i}.`), `${prefix}${i}.`);
}

/** Reads block `prefix` (the weights of `params` the factory needs; into `arena` when streaming) and builds it. */
export async function readBlock<T>(
  source: TensorSource,
  params: readonly ParamSpec[],
  prefix: string,
  factory: LinearFactory,
  make: (prefix: string, ws: WeightSet, factory: LinearFactory) => T,
  arena?: BlockArena,
): Promise<T> {
  const specs = factory.requiredSpecs(params, prefix);
  return make(prefix, await loadBlockWeights(source, specs, prefix, arena), factory);
}
