import type { Tensor, TensorInfo, TensorSource } from "@svdquant/tensor";
import { PipelineError } from "./errors.js";

/**
 * A view of `base` that shows only the tensors of `names` (view name → name in `base`): the 16-bit part of a
 * quantized checkpoint under the model's own (diffusers) names.
 */
export class RenamedSource implements TensorSource {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly base: TensorSource;
  private readonly map: ReadonlyMap<string, string>;
  readonly readInto?: (name: string, dst: Uint8Array) => Promise<void>;

  constructor(base: TensorSource, names: ReadonlyMap<string, string>) {
    this.base = base;
    this.map = names;
    this.path = base.path;
    this.metadata = base.metadata;
    for (const [view, real] of names)
      if (!base.has(real)) throw new PipelineError("E_CHECKPOINT", `missing tensor ${real} (for ${view})`, base.path);
    const into = base.readInto?.bind(base);
    if (into !== undefined) this.readInto = (name, dst) => into(this.real(name), dst);
  }

  private real(name: string): string {
    const r = this.map.get(name);
    if (r === undefined) throw new PipelineError("E_CHECKPOINT", `no tensor ${name}`, this.path);
    return r;
  }
  names(): string[] {
    return [...this.map.keys()];
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  info(name: string): TensorInfo & { readonly file: string } {
    return { ...this.base.info(this.real(name)), name };
  }
  read(name: string): Promise<Tensor> {
    return this.base.read(this.real(name));
  }
  close(): Promise<void> {
    return this.base.close();
  }
}
