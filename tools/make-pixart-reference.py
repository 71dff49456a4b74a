#!/usr/bin/env python3
"""Reference trajectories of diffusers' PixArtSigmaPipeline on a tiny random PixArt-Σ pipeline.

The pipeline's parts come from the committed fixture folder fixtures/pipeline/pixart (T5 tokenizer, T5 encoder
d_model 32, 4-channel VAE with scale factor 4, DPM-Solver++ scheduler); this script adds a tiny random
PixArtTransformer2DModel consistent with them (caption_channels = T5 d_model 32, in_channels = 4 latent channels,
out_channels 8 = ε + learned σ, sample_size 32 so resolution binning uses ASPECT_RATIO_256_BIN) and records:

  OUTDIR/transformer/               config.json + diffusion_pytorch_model.safetensors (seed 301)
  OUTDIR/model_index.json           the whole pipeline's model_index.json (with the transformer)
  OUTDIR/reference.safetensors      per case C (case0 … case3), computed on the CPU in float32 (and float64: *.f64):
      C.input_ids / C.mask                    tokenizer ids and attention mask of the (lower-cased, stripped) prompt
      C.neg_input_ids / C.neg_mask            the same for the empty negative prompt (CFG cases)
      C.prompt_embeds / C.negative_embeds     encode_prompt's outputs [1, 300, 32] (negative: case0 only)
      C.latents0                              initial latents (seeded torch.randn, passed as `latents=`)
      C.timesteps                             scheduler timesteps
      C.t_in [steps, B]                       the timestep tensor given to the transformer
      C.noise_pred [steps, B, 8, h, w]        the transformer's raw output per step (B = 2 with CFG: uncond, text;
                                              case0 only)
      C.latents [steps, 1, 4, h, w]           latents after each scheduler step (last = final latents)
      C.decoded [1, 3, H, W]                  vae.decode(latents / scaling_factor) (no binning cases)
      C.image [1, 3, H', W']                  postprocessed image in [0, 1] (after binning's resize_and_crop)
      C.pixels [1, H', W', 3] uint8           what the pipeline's PIL output holds
      resize.input [1, 3, 37, 53], resize.<i>.<H>x<W>   resize_and_crop_tensor of a random image to 4 sizes
  metadata "cases": JSON list of {prompt, seed, steps, guidance, height, width, binning, binned_height, binned_width}
  metadata "bins": JSON {tables: the four ASPECT_RATIO_*_BIN as [ratio, h, w], queries: [h, w] sizes,
                         classified: per table, classify_height_width_bin of each query}

Run on a machine with torch + transformers, the diffusers sources on sys.path (PYTHONPATH), from the repo root:
  python tools/make-pixart-reference.py OUTDIR [PARTS_DIR=fixtures/pipeline/pixart]
"""

import copy
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_common import set_seeded_random  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("OUT", "out"), "pixart-ref")
PARTS = sys.argv[2] if len(sys.argv) > 2 else "fixtures/pipeline/pixart"
FAILED = []

CASES = [
    # prompt, seed, steps, guidance, height, width, binning
    ("a small red circle on the left", 0, 5, 4.5, 48, 64, False),
    ("  A Huge BLUE star at the top, kalomi zorpe!  ", 1, 5, 4.5, 64, 40, False),
    ("a tiny green ring in the middle", 2, 3, 1.0, 32, 32, False),  # no CFG: batch 1
    ("a small red circle on the left", 3, 2, 4.5, 40, 56, True),  # binned to ASPECT_RATIO_256_BIN
]

TRANSFORMER = dict(
    sample_size=32,
    patch_size=2,
    in_channels=4,
    out_channels=8,
    num_layers=2,
    num_attention_heads=4,
    attention_head_dim=8,
    cross_attention_dim=32,
    caption_channels=32,
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    interpolation_scale=None,
    use_additional_conditions=None,  # resolved by the model: sample_size == 128 -> True, else False
)


def load_tokenizer(path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        t = AutoTokenizer.from_pretrained(path)
        print("  tokenizer", path, "->", type(t).__name__, flush=True)
        return t
    except Exception as e:  # noqa: BLE001
        print("  AutoTokenizer failed on", path, ":", repr(e)[:300], flush=True)
        cfg = json.load(open(os.path.join(path, "tokenizer_config.json")))
        kw = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token", "model_max_length") if k in cfg}
        return PreTrainedTokenizerFast(tokenizer_file=os.path.join(path, "tokenizer.json"), **kw)


BINS_META = [""]


def binning_reference(R):
    """The four aspect-ratio tables, classify_height_width_bin on a grid of sizes, resize_and_crop_tensor."""
    import torch
    from diffusers.image_processor import PixArtImageProcessor
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import (
        ASPECT_RATIO_256_BIN,
        ASPECT_RATIO_512_BIN,
        ASPECT_RATIO_1024_BIN,
    )
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import ASPECT_RATIO_2048_BIN

    tables = {"256": ASPECT_RATIO_256_BIN, "512": ASPECT_RATIO_512_BIN, "1024": ASPECT_RATIO_1024_BIN,
              "2048": ASPECT_RATIO_2048_BIN}
    queries = [(h, w) for h in range(64, 4097, 200) for w in range(64, 4097, 248)]
    BINS_META[0] = json.dumps({
        "tables": {k: [[float(r), int(v[0]), int(v[1])] for r, v in t.items()] for k, t in tables.items()},
        "queries": queries,
        "classified": {k: [list(PixArtImageProcessor.classify_height_width_bin(h, w, ratios=t)) for h, w in queries]
                       for k, t in tables.items()},
    })
    g = torch.Generator().manual_seed(77)
    x = torch.randn(1, 3, 37, 53, generator=g)
    R["resize.input"] = x
    for i, (nh, nw) in enumerate([(10, 14), (37, 60), (80, 100), (20, 53)]):
        R[f"resize.{i}.{nh}x{nw}"] = PixArtImageProcessor.resize_and_crop_tensor(x.clone(), nw, nh).contiguous()


def main():
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel
    from safetensors.torch import save_file
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    torch.set_num_threads(8)
    print("torch", torch.__version__, flush=True)
    os.makedirs(OUT, exist_ok=True)

    tr = PixArtTransformer2DModel(**TRANSFORMER)
    set_seeded_random(tr, 301)
    tr.save_pretrained(os.path.join(OUT, "transformer"))
    print("  transformer use_additional_conditions ->", tr.use_additional_conditions, flush=True)
    mi = json.load(open(os.path.join(PARTS, "model_index.json")))
    mi["transformer"] = ["diffusers", "PixArtTransformer2DModel"]
    with open(os.path.join(OUT, "model_index.json"), "w") as f:
        json.dump(mi, f, indent=2, sort_keys=True)
        f.write("\n")

    tok = load_tokenizer(os.path.join(PARTS, "tokenizer"))
    te = T5EncoderModel.from_pretrained(os.path.join(PARTS, "text_encoder"))
    vae = AutoencoderKL.from_pretrained(os.path.join(PARTS, "vae"))
    sch = DPMSolverMultistepScheduler.from_pretrained(os.path.join(PARTS, "scheduler"))
    pipe32 = PixArtSigmaPipeline(tokenizer=tok, text_encoder=te.float().eval(), vae=vae.float().eval(),
                                 transformer=tr.float().eval(), scheduler=sch)
    pipe32.set_progress_bar_config(disable=True)
    R = {}
    meta = []

    def run_case(pipe, ci, case, dtype, suffix):
        prompt, seed, steps, guidance, height, width, binning = case
        tag = f"case{ci}"
        cfg = guidance > 1.0
        g = torch.Generator().manual_seed(seed)
        # the latent grid the pipeline will use (after binning, if any)
        h, w = height, width
        if binning:
            from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import ASPECT_RATIO_256_BIN

            h, w = pipe.image_processor.classify_height_width_bin(height, width, ratios=ASPECT_RATIO_256_BIN)
        f = pipe.vae_scale_factor
        lat0 = torch.randn(1, 4, int(h) // f, int(w) // f, generator=g, dtype=torch.float32)
        with torch.no_grad():
            pe, pm, ne, nm = pipe.encode_prompt(prompt, cfg, negative_prompt="", device="cpu", clean_caption=False,
                                                max_sequence_length=300)
        trace = {"t_in": [], "noise_pred": [], "latents": []}

        def hook(_mod, args, kwargs, out):
            trace["t_in"].append(kwargs["timestep"].detach().clone())
            trace["noise_pred"].append(out[0].detach().clone())

        hd = pipe.transformer.register_forward_hook(hook, with_kwargs=True)
        try:
            res = pipe(
                prompt=prompt, negative_prompt="", num_inference_steps=steps, guidance_scale=guidance,
                height=height, width=width, latents=lat0.to(dtype), output_type="pt" if binning else "latent",
                callback=lambda i, t, lat: trace["latents"].append(lat.detach().clone()), callback_steps=1,
                clean_caption=False, use_resolution_binning=binning, max_sequence_length=300,
            )
        finally:
            hd.remove()
        out = res.images
        R[f"{tag}.latents{suffix}"] = torch.stack(trace["latents"]).float()
        R[f"{tag}.noise_pred{suffix}"] = torch.stack(trace["noise_pred"]).float()
        R[f"{tag}.prompt_embeds{suffix}"] = pe.float()
        if cfg:
            R[f"{tag}.negative_embeds{suffix}"] = ne.float()
        with torch.no_grad():
            if binning:
                img = out
            else:
                dec = pipe.vae.decode(out / pipe.vae.config.scaling_factor, return_dict=False)[0]
                R[f"{tag}.decoded{suffix}"] = dec.float()
                img = pipe.image_processor.postprocess(dec, output_type="pt")
        R[f"{tag}.image{suffix}"] = img.float()
        if suffix == "":
            R[f"{tag}.latents0"] = lat0
            R[f"{tag}.t_in"] = torch.stack(trace["t_in"]).to(torch.int64)
            R[f"{tag}.timesteps"] = pipe.scheduler.timesteps.clone().to(torch.int64)
            R[f"{tag}.mask"] = pm.to(torch.int64)
            enc = pipe.tokenizer(prompt.lower().strip(), padding="max_length", max_length=300, truncation=True,
                                 add_special_tokens=True, return_tensors="pt")
            R[f"{tag}.input_ids"] = enc.input_ids.to(torch.int64)
            if cfg:
                R[f"{tag}.neg_mask"] = nm.to(torch.int64)
                R[f"{tag}.neg_input_ids"] = pipe.tokenizer([""], padding="max_length", max_length=300, truncation=True,
                                                           add_special_tokens=True, return_tensors="pt").input_ids
            # numpy_to_pil: (images * 255).round().astype("uint8") of the NHWC float image
            R[f"{tag}.pixels"] = (img.permute(0, 2, 3, 1).float().numpy() * 255).round().astype("uint8")
            R[f"{tag}.pixels"] = torch.from_numpy(R[f"{tag}.pixels"])
            meta.append(dict(prompt=prompt, seed=seed, steps=steps, guidance=guidance, height=height, width=width,
                             binning=binning, binned_height=int(h), binned_width=int(w)))
        print(f"  {tag}{suffix}: latents {tuple(out.shape) if not binning else tuple(trace['latents'][-1].shape)}"
              f" image {tuple(img.shape)} |lat| max {trace['latents'][-1].abs().max().item():.4g}", flush=True)

    for ci, case in enumerate(CASES):
        t0 = time.time()
        try:
            run_case(pipe32, ci, case, torch.float32, "")
        except Exception:
            traceback.print_exc()
            FAILED.append(f"case{ci}")
        print(f"  case{ci} f32 {time.time() - t0:.1f}s", flush=True)
    # float64 twin (same tokenizer, weights, initial latents)
    try:
        pipe64 = PixArtSigmaPipeline(tokenizer=tok, text_encoder=copy.deepcopy(te).double(),
                                     vae=copy.deepcopy(vae).double(), transformer=copy.deepcopy(tr).double(),
                                     scheduler=DPMSolverMultistepScheduler.from_pretrained(os.path.join(PARTS, "scheduler")))
        pipe64.set_progress_bar_config(disable=True)
        for ci, case in enumerate(CASES):
            t0 = time.time()
            try:
                run_case(pipe64, ci, case, torch.float64, ".f64")
            except Exception:
                traceback.print_exc()
                FAILED.append(f"case{ci}.f64")
            print(f"  case{ci} f64 {time.time() - t0:.1f}s", flush=True)
    except Exception:
        traceback.print_exc()
        FAILED.append("f64")
    # keep the file small: the empty negative prompt's embeddings once, raw transformer outputs and float64
    # embeddings only for case0 (debugging aids), every latent trajectory and image
    def keep(k):
        if k.startswith("case0."):
            return True
        return not (".negative_embeds" in k or ".noise_pred" in k or k.endswith("prompt_embeds.f64"))

    R = {k: v.contiguous() for k, v in R.items() if keep(k)}
    binning_reference(R)
    save_file(R, os.path.join(OUT, "reference.safetensors"), metadata={"cases": json.dumps(meta), "bins": BINS_META[0]})
    for k in sorted(R):
        print(f"  {k} {tuple(R[k].shape)} {R[k].dtype}")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        FAILED.append("main")
    print("FAILED:", FAILED if FAILED else "none", flush=True)
    sys.exit(1 if FAILED else 0)
