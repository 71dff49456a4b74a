"""Train the built-in toy FLUX model (models/toy-flux): a small diffusers FluxPipeline on coloured shapes.

  python tools/train-toy/train.py --out models/toy-flux --results /tmp/toy-results [--smoke] [--seed 0]
  python tools/train-toy/train.py --verify models/toy-flux     # CPU: reload, regenerate the samples, compare

Needs torch, transformers, tokenizers, safetensors, numpy, Pillow and the diffusers sources (--diffusers-src or on
sys.path). What it does, in order:
  1. word-level tokenizers (tokenizers library) and random, frozen text encoders: CLIPTextModel (pooled) and
     T5EncoderModel; every caption of the data set is encoded once through FluxPipeline.encode_prompt;
  2. an AutoencoderKL (16 latent channels, 4x down) trained on rendered shapes; its scaling/shift factors are set
     from the latents' mean and standard deviation, as FLUX's are;
  3. a FluxTransformer2DModel trained with FLUX's rectified-flow objective (x_t = (1-t) x0 + t e, target e - x0,
     t ~ logit-normal), 10% caption dropout, EMA weights;
  4. the pipeline saved with save_pretrained (safetensors), reloaded with FluxPipeline.from_pretrained, and fixed
     prompts/seeds sampled on the CPU in float32: PNGs + reference.safetensors (token ids, embeddings, initial and
     final latents, the trajectory of sample 0, decoded images);
  5. a caption check on random prompts (shapes.detect), and the per-channel absmax of every transformer linear
     layer's input, at initialisation and after training (activation-stats.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

FIXED_SAMPLES = [
    ("a big red circle on the left", 1000),
    ("a small blue square at the top", 1001),
    ("a big green triangle in the center", 1002),
    ("a yellow cross on the right", 1003),
    ("a small magenta circle at the bottom", 1004),
    ("a big cyan square on the right", 1005),
    ("a blue triangle at the top", 1006),
    ("a big yellow cross", 1007),
]

FULL = {
    "clip": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
    "t5": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4},
    "vae": {"block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 32},
    "transformer": {"num_layers": 2, "num_single_layers": 4, "attention_head_dim": 32, "num_attention_heads": 6},
    "vae_steps": 3000,
    "vae_batch": 64,
    "vae_lr": 5e-4,
    "vae_max_s": 75,
    "n_data": 60_000,
    "dit_steps": 12_000,
    "dit_batch": 512,
    "dit_lr": 5e-4,
    "dit_max_s": 420,
    "eval_n": 96,
    "sample_steps": 20,
    "amp": True,
    "dit_amp": False,
}
SMOKE = {
    "clip": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
    "t5": {"d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 2},
    "vae": {"block_out_channels": [8, 16, 16], "layers_per_block": 1, "norm_num_groups": 8},
    "transformer": {"num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2},
    "vae_steps": 6,
    "vae_batch": 8,
    "vae_lr": 5e-4,
    "vae_max_s": 60,
    "n_data": 256,
    "dit_steps": 6,
    "dit_batch": 16,
    "dit_lr": 4e-4,
    "dit_max_s": 60,
    "eval_n": 6,
    "sample_steps": 3,
    "amp": True,
    "dit_amp": False,
}
CLIP_MAX_LEN = 16  # bos + up to 9 words + eos fits; the CLIP position table has this many rows
T5_MAX_LEN = 32  # max_sequence_length the transformer was trained with (FLUX: 512 dev / 256 schnell)
LATENT_CHANNELS = 16  # as FLUX's VAE
CAPTION_DROPOUT = 0.1
KL_WEIGHT = 1e-6
EMA_DECAY = 0.999


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_tokenizers(words: list[str]):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # ids: T5's conventions for pad/eos/unk (0/1/2), then a bos for CLIP, then the words.
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "<s>": 3}
    for w in words:
        vocab[w] = len(vocab)

    def make(template: str, max_len: int, with_bos: bool):
        tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tk.normalizer = normalizers.Lowercase()
        tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tk.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[("<s>", 3), ("</s>", 1)]
        )
        kw = {"bos_token": "<s>"} if with_bos else {}
        return PreTrainedTokenizerFast(
            tokenizer_object=tk, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=max_len, **kw
        )

    clip_tok = make("<s> $A </s>", CLIP_MAX_LEN, True)  # CLIP: bos text eos, pooled at the first eos
    t5_tok = make("$A </s>", T5_MAX_LEN, False)  # T5: text eos
    return clip_tok, t5_tok, vocab


def build_models(cfg: dict, vocab_size: int):
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    c = cfg["clip"]
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            max_position_embeddings=CLIP_MAX_LEN,
            hidden_act="quick_gelu",  # CLIP ViT-L/14's text tower
            bos_token_id=3,
            eos_token_id=1,  # not 2: transformers' legacy argmax-pooling path is taken only for eos id 2
            pad_token_id=0,
            projection_dim=c["hidden_size"],
            **c,
        )
    )
    t = cfg["t5"]
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            feed_forward_proj="gated-gelu",  # T5 v1.1 (FLUX's t5-v1_1-xxl)
            relative_attention_num_buckets=32,
            relative_attention_max_distance=128,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            num_decoder_layers=0,
            tie_word_embeddings=False,
            **t,
        )
    )
    v = cfg["vae"]
    nb = len(v["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * nb,
        up_block_types=("UpDecoderBlock2D",) * nb,
        block_out_channels=tuple(v["block_out_channels"]),
        layers_per_block=v["layers_per_block"],
        norm_num_groups=v["norm_num_groups"],
        latent_channels=LATENT_CHANNELS,
        sample_size=64,
        scaling_factor=1.0,  # set from the data after training
        shift_factor=0.0,
        use_quant_conv=False,  # as FLUX's VAE
        use_post_quant_conv=False,
        force_upcast=False,
    )
    tr = cfg["transformer"]
    head = tr["attention_head_dim"]
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,  # 2x2 packed latents
        out_channels=None,
        num_layers=tr["num_layers"],
        num_single_layers=tr["num_single_layers"],
        attention_head_dim=head,
        num_attention_heads=tr["num_attention_heads"],
        joint_attention_dim=t["d_model"],
        pooled_projection_dim=c["hidden_size"],
        guidance_embeds=False,  # FLUX.1-schnell-like: no guidance embedding
        axes_dims_rope=(head // 4, 3 * head // 8, 3 * head // 8),  # FLUX: (16, 56, 56) of 128
    )
    # FLUX.1-dev's scheduler config (resolution-dependent shift on).
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    for m in (clip, t5):
        m.eval().requires_grad_(False)
    return clip, t5, vae, transformer, scheduler


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def lr_at(step: int, total: int, base: float, warmup: int, time_frac: float = 0.0) -> float:
    """Linear warmup, then cosine to 10% of base over the steps or the wall-clock cap, whichever ends first."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train_vae(vae, cfg, dev, gen, amp_dtype):
    import torch
    import torch.nn.functional as F

    from shapes import render, sample_attributes

    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg["vae_lr"], weight_decay=0.0)
    losses = []
    t0 = time.time()
    steps = cfg["vae_steps"]
    done = 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, cfg["vae_lr"], 100, (time.time() - t0) / cfg["vae_max_s"])
        x = render(sample_attributes(cfg["vae_batch"], gen), dev) / 127.5 - 1
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=cfg["amp"]):
            post = vae.encode(x).latent_dist
            z = post.mean + torch.exp(0.5 * post.logvar) * torch.randn_like(post.mean)
            rec = vae.decode(z).sample
        mean, logvar = post.mean.float(), post.logvar.float()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum((1, 2, 3)).mean()
        rec_loss = F.mse_loss(rec.float(), x)
        loss = rec_loss + KL_WEIGHT * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        done = step + 1
        if step % 250 == 0 or step == steps - 1:
            losses.append({"step": step, "mse": rec_loss.item(), "kl": kl.item(), "s": round(time.time() - t0, 1)})
            log(f"vae step {step} mse {losses[-1]['mse']:.5f} kl {losses[-1]['kl']:.1f}")
        if time.time() - t0 > cfg["vae_max_s"]:
            log(f"vae: time cap {cfg['vae_max_s']} s reached at step {done}")
            break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    vae.eval().requires_grad_(False)
    return {"steps": done, "seconds": round(time.time() - t0, 1), "losses": losses}


def encode_dataset(vae, cfg, dev, gen, amp_dtype):
    import torch

    from shapes import caption_indices, render, sample_attributes

    n = cfg["n_data"]
    attrs = sample_attributes(n, gen)
    caps = caption_indices(attrs)
    chunk = 2000
    lat = []
    with torch.no_grad():
        for i in range(0, n, chunk):
            sub = {k: v[i : i + chunk] for k, v in attrs.items()}
            x = render(sub, dev) / 127.5 - 1
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=cfg["amp"]):
                m = vae.encode(x).latent_dist.mean
            lat.append(m.float())
    lat = torch.cat(lat)
    return lat, caps.to(dev)


def mse_recon(vae, dev, gen, n=256):
    """Reconstruction error of the trained VAE (float32, posterior mean) on fresh scenes, in 0..255 units."""
    import torch

    from shapes import render, sample_attributes

    with torch.no_grad():
        x = render(sample_attributes(n, gen), dev) / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        return float(((rec.clamp(-1, 1) - x) * 127.5).pow(2).mean().sqrt())


def train_transformer(model, data, caps, t5_tab, clip_tab, cfg, dev, amp_dtype):
    import torch
    import torch.nn.functional as F
    from diffusers import FluxPipeline

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["dit_lr"], betas=(0.9, 0.99), weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    img_ids = FluxPipeline._prepare_latent_image_ids(1, 8, 8, dev, torch.float32)
    txt_ids = torch.zeros(T5_MAX_LEN, 3, device=dev)
    steps, bsz, n = cfg["dit_steps"], cfg["dit_batch"], data.shape[0]
    losses = []
    t0 = time.time()
    done = 0
    run_loss = torch.zeros((), device=dev)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, cfg["dit_lr"], 300, (time.time() - t0) / cfg["dit_max_s"])
        idx = torch.randint(0, n, (bsz,), device=dev)
        x0 = data[idx]
        cap = torch.where(torch.rand(bsz, device=dev) < CAPTION_DROPOUT, torch.zeros_like(caps[idx]), caps[idx])
        t = torch.sigmoid(torch.randn(bsz, device=dev))  # logit-normal(0, 1), as SD3/FLUX training
        noise = torch.randn_like(x0)
        xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
        # float32 (TF32 on the GPU): a bf16-autocast run hit CUBLAS_STATUS_EXECUTION_FAILED in backward (torch 2.11,
        # cu130, H100); the model is small enough for launch overhead, not math, to set the step time.
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=cfg["dit_amp"]):
            v = model(
                hidden_states=xt,
                encoder_hidden_states=t5_tab[cap],
                pooled_projections=clip_tab[cap],
                timestep=t,
                img_ids=img_ids,
                txt_ids=txt_ids,
                return_dict=False,
            )[0]
        loss = F.mse_loss(v.float(), noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(EMA_DECAY, (1 + step) / (10 + step))
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        run_loss += loss.detach()
        done = step + 1
        if (step + 1) % 500 == 0 or step == steps - 1:
            k = (step % 500) + 1
            losses.append({"step": step, "loss": (run_loss / k).item(), "s": round(time.time() - t0, 1)})
            run_loss.zero_()
            log(f"dit step {step} loss {losses[-1]['loss']:.4f}")
        if time.time() - t0 > cfg["dit_max_s"]:
            log(f"dit: time cap {cfg['dit_max_s']} s reached at step {done}")
            break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    model.eval().requires_grad_(False)
    return {"steps": done, "seconds": round(time.time() - t0, 1), "losses": losses}


class ActStats:
    """Per-channel absmax of every nn.Linear input of a module (forward pre-hooks)."""

    def __init__(self, model):
        import torch

        self.absmax: dict = {}
        self.handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear):
                self.handles.append(mod.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name):
        import torch

        def fn(_mod, args):
            x = args[0].detach().float()
            m = x.abs().reshape(-1, x.shape[-1]).amax(0)
            prev = self.absmax.get(name)
            self.absmax[name] = m if prev is None else torch.maximum(prev, m)

        return fn

    def close(self):
        for h in self.handles:
            h.remove()

    def summary(self) -> dict:
        out = {}
        for name, m in self.absmax.items():
            v = m.double().cpu()
            med = float(v.median())
            srt, order = v.sort(descending=True)
            out[name] = {
                "K": int(v.numel()),
                "max": round(float(srt[0]), 5),
                "median": round(med, 5),
                "p99": round(float(v.quantile(0.99)), 5),
                "max_over_median": round(float(srt[0]) / max(med, 1e-12), 3),
                "channels_over_8x_median": int((v > 8 * med).sum()),
                "top_channels": [int(i) for i in order[:4]],
                "top_values": [round(float(x), 4) for x in srt[:4]],
            }
        return out


def stats_batch(data, caps, t5_tab, clip_tab, dev, n=256, seed=7):
    """A fixed batch of training-distribution transformer inputs (noisy latents at logit-normal t)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.randint(0, data.shape[0], (n,), generator=g).to(dev)
    t = torch.sigmoid(torch.randn(n, generator=g)).to(dev)
    noise = torch.randn(data[idx].shape, generator=g).to(dev)
    x0 = data[idx]
    xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
    return {"hidden_states": xt, "timestep": t, "cap": caps[idx]}


def run_stats(model, batch, t5_tab, clip_tab, dev) -> dict:
    import torch
    from diffusers import FluxPipeline

    st = ActStats(model)
    with torch.no_grad():
        model(
            hidden_states=batch["hidden_states"],
            encoder_hidden_states=t5_tab[batch["cap"]],
            pooled_projections=clip_tab[batch["cap"]],
            timestep=batch["timestep"],
            img_ids=FluxPipeline._prepare_latent_image_ids(1, 8, 8, dev, torch.float32),
            txt_ids=torch.zeros(T5_MAX_LEN, 3, device=dev),
            return_dict=False,
        )
    st.close()
    return st.summary()


def stats_digest(summary: dict) -> dict:
    import statistics

    r = [v["max_over_median"] for v in summary.values()]
    return {
        "layers": len(r),
        "max_over_median_median": round(statistics.median(r), 2),
        "max_over_median_max": round(max(r), 2),
        "layers_with_channel_over_8x_median": sum(1 for v in summary.values() if v["channels_over_8x_median"] > 0),
    }


def generate_fixed(pipe, samples, steps):
    """FluxPipeline on the CPU in float32 from recorded initial latents; returns everything the reference holds."""
    import numpy as np
    import torch
    from diffusers import FluxPipeline
    from diffusers.utils.torch_utils import randn_tensor

    vsf = pipe.vae_scale_factor
    h = w = 64
    lh = 2 * (h // (vsf * 2))
    rec: dict = {"initial": [], "final": [], "image": [], "pngs": [], "clip_ids": [], "t5_ids": []}
    rec["prompt_embeds"], rec["pooled"] = [], []
    traj = []
    for k, (prompt, seed) in enumerate(samples):
        noise = randn_tensor((1, LATENT_CHANNELS, lh, lh), generator=torch.Generator("cpu").manual_seed(seed),
                             device=torch.device("cpu"), dtype=torch.float32)
        packed = FluxPipeline._pack_latents(noise, 1, LATENT_CHANNELS, lh, lh)

        def cb(_pipe, i, t, kw, k=k):
            if k == 0:
                traj.append(kw["latents"].clone())
            return {}

        with torch.no_grad():
            pe, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=torch.device("cpu"),
                                               max_sequence_length=T5_MAX_LEN)
            final = pipe(prompt=prompt, height=h, width=w, num_inference_steps=steps, max_sequence_length=T5_MAX_LEN,
                         latents=packed.clone(), output_type="latent", callback_on_step_end=cb,
                         return_dict=False)[0]
            lat = FluxPipeline._unpack_latents(final, h, w, vsf)
            lat = lat / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            img = pipe.vae.decode(lat, return_dict=False)[0]
        pil = pipe.image_processor.postprocess(img, output_type="pil")[0]
        rec["initial"].append(packed[0])
        rec["final"].append(final[0])
        rec["image"].append(img[0])
        rec["pngs"].append(pil)
        rec["prompt_embeds"].append(pe[0])
        rec["pooled"].append(pooled[0])
        rec["clip_ids"].append(pipe.tokenizer(prompt, padding="max_length", max_length=pipe.tokenizer_max_length,
                                              truncation=True, return_tensors="pt").input_ids[0])
        rec["t5_ids"].append(pipe.tokenizer_2(prompt, padding="max_length", max_length=T5_MAX_LEN, truncation=True,
                                              return_tensors="pt").input_ids[0])
    tensors = {
        "clip_input_ids": torch.stack(rec["clip_ids"]).to(torch.int32),
        "t5_input_ids": torch.stack(rec["t5_ids"]).to(torch.int32),
        "prompt_embeds": torch.stack(rec["prompt_embeds"]).float(),
        "pooled_prompt_embeds": torch.stack(rec["pooled"]).float(),
        "initial_latents": torch.stack(rec["initial"]).float(),
        "final_latents": torch.stack(rec["final"]).float(),
        "decoded": torch.stack(rec["image"]).float(),
        "trajectory_0": torch.cat(traj).float(),
        "sigmas": pipe.scheduler.sigmas.float().clone(),
        "timesteps": pipe.scheduler.timesteps.float().clone(),
    }
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    images = [np.asarray(p.convert("RGB")) for p in rec["pngs"]]
    return tensors, rec["pngs"], images


def evaluate(pipe, dev, n, steps, seed, stats=False):
    """Random captions (no empty one) -> images -> detector; per-attribute accuracy and activation stats."""
    import numpy as np
    import torch

    from shapes import all_captions, detect, matches

    caps = all_captions()[1:]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(caps), (n,), generator=g).tolist()
    prompts = [caps[i][0] for i in pick]
    st = ActStats(pipe.transformer) if stats else None
    images = []
    bs = 32
    for i in range(0, n, bs):
        gen = torch.Generator(dev).manual_seed(seed + i)
        with torch.no_grad():
            out = pipe(prompt=prompts[i : i + bs], height=64, width=64, num_inference_steps=steps,
                       max_sequence_length=T5_MAX_LEN, generator=gen, output_type="np").images
        images.extend((out * 255).round().clip(0, 255).astype(np.uint8))
    if st:
        st.close()
    per = {"color": [], "shape": [], "size": [], "position": []}
    full = []
    rows = []
    for p, img in zip(prompts, images):
        d = detect(img)
        m = matches(d, p)
        for k, ok in m.items():
            per[k].append(ok)
        full.append(all(m.values()))
        rows.append({"prompt": p, "detected": d, "match": m})
    acc = {k: (round(sum(v) / len(v), 4) if v else None) for k, v in per.items()}
    acc["all_named_attributes"] = round(sum(full) / len(full), 4)
    return acc, rows, images, (st.summary() if st else None)


def grid(images, cols=8, scale=2):
    import numpy as np
    from PIL import Image

    s = images[0].shape[0]
    rows = (len(images) + cols - 1) // cols
    g = np.zeros((rows * (s + 2), cols * (s + 2), 3), dtype=np.uint8) + 255
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        g[r * (s + 2) : r * (s + 2) + s, c * (s + 2) : c * (s + 2) + s] = im
    return Image.fromarray(g).resize((g.shape[1] * scale, g.shape[0] * scale), Image.NEAREST)


def save_data_examples(out_dir, n=8, seed=4242):
    """A few rendered training scenes (not generated) with their full captions: the detector's positive control."""
    import torch
    from PIL import Image

    from shapes import SPEC, caption, detect, matches, render, sample_attributes

    attrs = sample_attributes(n, torch.Generator().manual_seed(seed))
    imgs = render(attrs).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    rows = []
    for k in range(n):
        text = caption(list(SPEC["sizes"])[int(attrs["size"][k])], list(SPEC["colors"])[int(attrs["color"][k])],
                       SPEC["shapes"][int(attrs["shape"][k])], list(SPEC["positions"])[int(attrs["position"][k])])
        name = f"data-{k}.png"
        Image.fromarray(imgs[k]).save(os.path.join(out_dir, "samples", name))
        d = detect(imgs[k])
        rows.append({"file": f"samples/{name}", "prompt": text, "detected": d, "match": matches(d, text)})
    return rows


def save_reference(out_dir, tensors, pngs, images, samples, steps, versions):
    from safetensors.torch import save_file

    from shapes import detect, matches

    os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
    listing = []
    for k, ((prompt, seed), png, img) in enumerate(zip(samples, pngs, images)):
        name = f"sample-{k}.png"
        png.save(os.path.join(out_dir, "samples", name))
        d = detect(img)
        listing.append({"file": f"samples/{name}", "prompt": prompt, "seed": seed, "detected": d,
                        "match": matches(d, prompt)})
    data_rows = save_data_examples(out_dir)
    meta = {
        "prompts": json.dumps([p for p, _ in samples]),
        "seeds": json.dumps([s for _, s in samples]),
        "height": "64",
        "width": "64",
        "num_inference_steps": str(steps),
        "max_sequence_length": str(T5_MAX_LEN),
        "device": "cpu",
        "dtype": "float32",
        "versions": json.dumps(versions),
    }
    save_file(tensors, os.path.join(out_dir, "samples", "reference.safetensors"), metadata=meta)
    with open(os.path.join(out_dir, "samples", "samples.json"), "w") as f:
        json.dump({"num_inference_steps": steps, "height": 64, "width": 64, "max_sequence_length": T5_MAX_LEN,
                   "samples": listing, "data": data_rows}, f, indent=1)
    return listing


def portable_tokenizer_class(out: str) -> None:
    """transformers 5 names its tokenizers.json-backed class TokenizersBackend; PreTrainedTokenizerFast loads the same
    files in transformers 4 and 5, so the saved folder names that."""
    path = os.path.join(out, "model_index.json")
    with open(path) as f:
        index = json.load(f)
    for key in ("tokenizer", "tokenizer_2"):
        index[key] = ["transformers", "PreTrainedTokenizerFast"]
        tc_path = os.path.join(out, key, "tokenizer_config.json")
        with open(tc_path) as f:
            tc = json.load(f)
        tc["tokenizer_class"] = "PreTrainedTokenizerFast"
        with open(tc_path, "w") as f:
            json.dump(tc, f, indent=2)
    with open(path, "w") as f:
        json.dump(index, f, indent=2)


def versions_info():
    import diffusers
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def train(args):
    import torch
    from diffusers import FluxPipeline

    import shapes

    cfg = dict(SMOKE if args.smoke else FULL)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp_dtype = torch.bfloat16
    torch.manual_seed(args.seed)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t_start = time.time()
    versions = versions_info()
    log(f"device {dev} {torch.cuda.get_device_name(0) if dev.type == 'cuda' else platform.processor()} {versions}")
    gen = torch.Generator().manual_seed(args.seed)

    clip_tok, t5_tok, vocab = build_tokenizers(shapes.vocabulary())
    clip, t5, vae, transformer, scheduler = build_models(cfg, len(vocab))
    sizes = {k: n_params(m) for k, m in [("text_encoder", clip), ("text_encoder_2", t5), ("vae", vae),
                                           ("transformer", transformer)]}
    log(f"parameters {sizes}")
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5,
                        tokenizer_2=t5_tok, transformer=transformer)

    # 1. every caption through the pipeline's own prompt encoding (CPU, float32)
    caps = shapes.all_captions()
    with torch.no_grad():
        t5_tab, clip_tab, _ = pipe.encode_prompt(prompt=[c for c, _ in caps], prompt_2=None,
                                                 device=torch.device("cpu"), max_sequence_length=T5_MAX_LEN)
    t5_tab, clip_tab = t5_tab.to(dev), clip_tab.to(dev)
    log(f"caption table {tuple(t5_tab.shape)} {tuple(clip_tab.shape)}")

    # 2. VAE
    vae.to(dev)
    vae_log = train_vae(vae, cfg, dev, gen, amp_dtype)
    data, cap_idx = encode_dataset(vae, cfg, dev, gen, amp_dtype)
    shift, std = float(data.mean()), float(data.std())
    vae.register_to_config(shift_factor=round(shift, 6), scaling_factor=round(1.0 / std, 6))
    data = (data - vae.config.shift_factor) * vae.config.scaling_factor
    vae_log["latent_mean"], vae_log["latent_std"] = shift, std
    vae_log["recon_rmse_255"] = mse_recon(vae, dev, gen)
    log(f"vae: latent mean {shift:.4f} std {std:.4f}; recon RMSE {vae_log['recon_rmse_255']:.2f}/255")
    packed = FluxPipeline._pack_latents(data, data.shape[0], LATENT_CHANNELS, 16, 16)

    # 3. transformer
    transformer.to(dev)
    batch = stats_batch(packed, cap_idx, t5_tab, clip_tab, dev)
    stats_init = run_stats(transformer, batch, t5_tab, clip_tab, dev)
    dit_log = train_transformer(transformer, packed, cap_idx, t5_tab, clip_tab, cfg, dev, amp_dtype)
    stats_trained = run_stats(transformer, batch, t5_tab, clip_tab, dev)
    del data, packed

    # 4. save, reload, fixed samples on the CPU
    pipe.to("cpu")
    out = args.out
    os.makedirs(out, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    portable_tokenizer_class(out)
    with open(os.path.join(out, "dataset.json"), "w") as f:
        json.dump({"spec": shapes.SPEC, "captions": [c for c, _ in caps], "vocabulary": vocab}, f, indent=1)
    del pipe
    pipe = FluxPipeline.from_pretrained(out, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    tensors, pngs, images = generate_fixed(pipe, FIXED_SAMPLES, cfg["sample_steps"])
    listing = save_reference(out, tensors, pngs, images, FIXED_SAMPLES, cfg["sample_steps"], versions)
    fixed_ok = sum(all(s["match"].values()) for s in listing)
    log(f"fixed samples matching their captions: {fixed_ok}/{len(listing)}")
    for s in listing:
        log(f"  {s['prompt']!r}: {s['detected']}")

    # 5. caption check + activation statistics while sampling (GPU, float32)
    pipe.to(dev)
    acc, rows, eval_images, stats_sampling = evaluate(pipe, dev, cfg["eval_n"], cfg["sample_steps"], args.seed + 99,
                                                      stats=True)
    log(f"caption check on {cfg['eval_n']} random prompts: {acc}")
    res = args.results
    os.makedirs(res, exist_ok=True)
    grid(eval_images).save(os.path.join(res, "eval-grid.png"))
    grid(images).save(os.path.join(res, "samples-grid.png"))
    act = {
        "what": "per-channel absmax of each transformer nn.Linear input; 'init' and 'trained' on one fixed batch of "
                "256 training-distribution inputs (noisy latents at logit-normal t), 'sampling' over the caption "
                "check's sampling run (all steps)",
        "digest": {"init": stats_digest(stats_init), "trained": stats_digest(stats_trained),
                   "sampling": stats_digest(stats_sampling)},
        "init": stats_init,
        "trained": stats_trained,
        "sampling": stats_sampling,
    }
    with open(os.path.join(out, "activation-stats.json"), "w") as f:
        json.dump(act, f, indent=1)
    log(f"activation digest {act['digest']}")
    total_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    train_log = {
        "seed": args.seed,
        "smoke": args.smoke,
        "config": cfg,
        "parameters": sizes,
        "vae": vae_log,
        "transformer": dit_log,
        "caption_check": acc,
        "fixed_samples_matching": fixed_ok,
        "model_bytes": total_bytes,
        "versions": versions,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "seconds": round(time.time() - t_start, 1),
        "command": " ".join(sys.argv),
    }
    with open(os.path.join(out, "training-log.json"), "w") as f:
        json.dump(train_log, f, indent=1)
    with open(os.path.join(res, "eval-rows.json"), "w") as f:
        json.dump(rows, f, indent=1)
    log(f"model folder {out}: {total_bytes / 2**20:.2f} MiB; total {train_log['seconds']} s")
    if args.smoke:
        return 0
    ok = (acc["color"] >= 0.9 and acc["shape"] >= 0.8 and (acc["position"] or 0) >= 0.8 and (acc["size"] or 0) >= 0.8
          and total_bytes <= 30 * 2**20)
    log("CHECK " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 3


def verify(args):
    """Reload a saved model on the CPU, regenerate its fixed samples and compare with reference.safetensors."""
    import numpy as np
    import torch
    from diffusers import FluxPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file

    from shapes import detect, matches

    d = args.verify
    ref = load_file(os.path.join(d, "samples", "reference.safetensors"))
    with safe_open(os.path.join(d, "samples", "reference.safetensors"), "pt") as f:
        meta = f.metadata()
    prompts, seeds = json.loads(meta["prompts"]), json.loads(meta["seeds"])
    steps = int(meta["num_inference_steps"])
    pipe = FluxPipeline.from_pretrained(d, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    tensors, _, images = generate_fixed(pipe, list(zip(prompts, seeds)), steps)
    worst = 0.0
    for k in ref:
        a, b = ref[k].double(), tensors[k].double()
        diff = float((a - b).abs().max()) if a.shape == b.shape else float("inf")
        worst = max(worst, diff if k not in ("clip_input_ids", "t5_input_ids") else diff * 1e6)
        log(f"{k:22s} {tuple(a.shape)} max|diff| {diff:.3g} (max|ref| {float(a.abs().max()):.3g})")
    bad = 0
    for k, (p, img) in enumerate(zip(prompts, images)):
        from PIL import Image

        committed = np.asarray(Image.open(os.path.join(d, "samples", f"sample-{k}.png")).convert("RGB"))
        px = int(np.abs(committed.astype(int) - img.astype(int)).max())
        m = matches(detect(committed), p)
        bad += not all(m.values())
        log(f"sample {k} {p!r}: max pixel diff {px}, caption match {m}")
    log(f"worst latent diff {worst:.3g}; samples not matching their caption: {bad}")
    return 0 if worst < 1e-3 else 4


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="model folder to write (diffusers FluxPipeline layout)")
    ap.add_argument("--results", default="toy-results", help="folder for grids and per-prompt eval rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and a few steps: checks the script end to end")
    ap.add_argument("--device", default=None)
    ap.add_argument("--diffusers-src", default=None, help="a diffusers checkout's src/ folder, put first on sys.path")
    ap.add_argument("--verify", default=None, help="model folder: regenerate its samples on the CPU and compare")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.diffusers_src:
        sys.path.insert(0, os.path.abspath(args.diffusers_src))
    if args.verify:
        return verify(args)
    if not args.out:
        ap.error("--out is required (or --verify)")
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
