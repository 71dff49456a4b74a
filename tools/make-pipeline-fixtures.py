#!/usr/bin/env python3
"""Reference fixtures for @svdquant/models' pipeline parts (samplers, text encoders, tokenizers, VAE decoder).

Produces, under OUTDIR/pipeline/ (default $OUT or ./out):
  flux/      a diffusers-layout folder of a tiny FLUX pipeline's parts (no transformer):
             tokenizer/ (CLIP-style byte-level BPE), tokenizer_2/ (T5-style Unigram), text_encoder/ (CLIPTextModel),
             text_encoder_2/ (T5EncoderModel), vae/ (16-channel AutoencoderKL, FLUX's factors), scheduler/
  pixart/    the same for PixArt-Sigma: tokenizer/ (T5-style), text_encoder/ (T5EncoderModel), vae/ (4-channel), scheduler/
  clip-proj/ text_encoder/ = CLIPTextModelWithProjection with hidden_act "gelu" and eos_token_id = the real EOS id
  samplers.safetensors  scheduler schedules and trajectories (FlowMatchEuler dev/schnell, DPM-Solver++ 2M + CFG)
  text.safetensors      token ids / masks of the tokenizers and encoder outputs (float64 reference)
  vae.safetensors       latents in, decoded images out (float64 reference)
All weights are random with fixed seeds (no checkpoints are downloaded). Run once on the GPU machine:
  python tools/make-pipeline-fixtures.py OUTDIR      (diffusers' src on PYTHONPATH; torch, transformers, tokenizers)
`--tokenizers-only` builds just the tokenizer folders (needs only the `tokenizers` package).
"""

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_common import set_seeded_random  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = os.path.join(args[0] if args else os.environ.get("OUT", "out"), "pipeline")
TOKENIZERS_ONLY = "--tokenizers-only" in sys.argv
FAILED = []


def stage(fn):
    print(f"== {fn.__name__}", flush=True)
    try:
        fn()
    except Exception:
        traceback.print_exc()
        FAILED.append(fn.__name__)


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------- corpus and prompts (procedural, seeded)
COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "cyan"]
SHAPES = ["circle", "square", "triangle", "star", "hexagon", "cross", "ring", "heart"]
SIZES = ["small", "large", "tiny", "huge"]
SYLLABLES = ["ka", "lo", "mi", "ren", "tas", "vu", "zor", "pe", "qui", "dan", "sho", "ber", "gli", "nox", "ya", "fel"]
PLACES = ["on the left", "on the right", "at the top", "at the bottom", "in the middle"]


def corpus():
    import random

    r = random.Random(14)
    lines = []
    for _ in range(3000):
        n = r.randint(1, 3)
        parts = [f"a {r.choice(SIZES)} {r.choice(COLORS)} {r.choice(SHAPES)} {r.choice(PLACES)}" for _ in range(n)]
        # pseudo-words from syllables give the subword trainers something to merge
        words = ["".join(r.choice(SYLLABLES) for _ in range(r.randint(1, 3))) for _ in range(r.randint(0, 4))]
        lines.append(", ".join(parts) + " " + " ".join(words) + r.choice([".", "!", "", " 42.", " (photo)", " it's 3D"]))
    return lines


PROMPTS = [
    "A small red circle on the left,  it's 3D! \u00dcn\u00efcode\ttabs \u2014 kalomi zorpe",
    "",
    # long: beyond 77 CLIP tokens and 512 T5 tokens, so truncation is exercised
    " ".join(f"a huge {COLORS[i % 10]} {SHAPES[i % 8]} {PLACES[i % 5]}," for i in range(110)) + " the end",
]


# ---------------------------------------------------------------- tokenizers
def build_clip_tokenizer(path):
    """Byte-level BPE with the CLIP pipeline (normalizer, pre-tokenizer, </w> suffix, BOS/EOS post-processor)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=360,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
    )
    tok.train_from_iterator(corpus(), trainer)
    # Specials last and inside the BPE vocabulary, as in CLIP's vocab.json (EOS has the highest id: the legacy
    # pooling rule relies on it; transformers' CLIPTokenizer uses <|endoftext|> as the model's unk token).
    trained = json.loads(tok.to_str())["model"]
    vocab = dict(trained["vocab"])
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok.model = models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                           fuse_unk=False, unk_token="<|endoftext|>")
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.RobertaProcessing(
        ("<|endoftext|>", eos), ("<|startoftext|>", bos), add_prefix_space=False, trim_offsets=False
    )
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    write_json(
        os.path.join(path, "tokenizer_config.json"),
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": 77,
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "do_lower_case": True,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": True,
        },
    )
    write_json(
        os.path.join(path, "special_tokens_map.json"),
        {
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
        },
    )
    return tok


def build_t5_tokenizer(path, max_length):
    """Unigram with Metaspace, specials <pad>=0 </s>=1 <unk>=2 and a `$A </s>` post-processor, as T5's."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    write_json(
        os.path.join(path, "tokenizer_config.json"),
        {
            "tokenizer_class": "T5Tokenizer",
            "model_max_length": max_length,
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "extra_ids": 0,
            "additional_special_tokens": [],
            "clean_up_tokenization_spaces": True,
        },
    )
    write_json(os.path.join(path, "special_tokens_map.json"), {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    return tok


def tokenizers_stage():
    build_clip_tokenizer(os.path.join(OUT, "flux/tokenizer"))
    build_t5_tokenizer(os.path.join(OUT, "flux/tokenizer_2"), 512)
    build_t5_tokenizer(os.path.join(OUT, "pixart/tokenizer"), 300)
    build_clip_tokenizer(os.path.join(OUT, "clip-proj/tokenizer"))


# ---------------------------------------------------------------- torch stages
T = {}  # name -> tensor for text.safetensors


def load_hf_tokenizer(path):
    """The transformers tokenizer the pipelines use (AutoTokenizer on the folder); PreTrainedTokenizerFast if that fails."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        t = AutoTokenizer.from_pretrained(path)
        print("  tokenizer", path, "->", type(t).__name__)
        return t
    except Exception as e:  # noqa: BLE001
        print("  AutoTokenizer failed on", path, ":", repr(e)[:300])
        cfg = json.load(open(os.path.join(path, "tokenizer_config.json")))
        kw = {k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token", "model_max_length") if k in cfg}
        return PreTrainedTokenizerFast(tokenizer_file=os.path.join(path, "tokenizer.json"), **kw)


def tokenize(path, max_length, tag):
    import torch

    tok = load_hf_tokenizer(path)
    # diffusers FLUX / PixArt-Sigma: padding="max_length", truncation=True, max_length (CLIP 77, T5 512 / 300)
    enc = tok(PROMPTS, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True, return_tensors="pt")
    T[f"{tag}.input_ids"] = enc.input_ids.to(torch.int64)
    T[f"{tag}.attention_mask"] = enc.attention_mask.to(torch.int64)
    plain = tok(PROMPTS[0], add_special_tokens=True).input_ids
    print(f"  {tag}: first prompt ids {plain}")
    # the tokenizers library alone on tokenizer.json (what a JS port reads), same padding/truncation
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    raw.enable_truncation(max_length)
    raw.enable_padding(length=max_length, pad_id=tok.pad_token_id, pad_token=tok.pad_token)
    T[f"{tag}.input_ids_raw"] = torch.tensor([e.ids for e in raw.encode_batch(PROMPTS)], dtype=torch.int64)
    return enc.input_ids, enc.attention_mask


def run_both(model, fn):
    """fn(model) in float32 and float64; returns (f32 outputs, f64 outputs)."""
    import copy

    import torch

    with torch.no_grad():
        a = fn(model.float().eval())
        b = fn(copy.deepcopy(model).double().eval())
    return a, b


def clip_stage_for(folder, cfg_kw, cls_name, seed, tag):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tok_path = os.path.join(OUT, folder, "tokenizer")
    ids, _mask = tokenize(tok_path, 77, tag)
    tj = json.load(open(os.path.join(tok_path, "tokenizer.json")))
    vocab = max(max(tj["model"]["vocab"].values()), max(a["id"] for a in tj["added_tokens"])) + 1
    specials = {a["content"]: a["id"] for a in tj["added_tokens"]}
    cfg = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        projection_dim=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        layer_norm_eps=1e-5,
        bos_token_id=specials["<|startoftext|>"],
        pad_token_id=specials["<|endoftext|>"],
        **cfg_kw,
    )
    model = (CLIPTextModelWithProjection if cls_name == "CLIPTextModelWithProjection" else CLIPTextModel)(cfg)
    set_seeded_random(model, seed)
    model.save_pretrained(os.path.join(OUT, folder, "text_encoder"))
    print("  saved", cls_name, sorted(model.state_dict().keys())[:6], "...")

    def fwd(m):
        o = m(ids, output_hidden_states=False)
        pooled = o.text_embeds if cls_name == "CLIPTextModelWithProjection" else o.pooler_output
        return o.last_hidden_state, pooled

    (h32, p32), (h64, p64) = run_both(model, fwd)
    T[f"{tag}.last_hidden_state"] = h64.float()
    T[f"{tag}.pooled"] = p64.float()
    T[f"{tag}.last_hidden_state_f32"] = h32.float()
    T[f"{tag}.pooled_f32"] = p32.float()


def t5_stage_for(folder, tok_sub, enc_sub, max_length, with_mask, seed, tag, **cfg_kw):
    from transformers import T5Config, T5EncoderModel

    tok_path = os.path.join(OUT, folder, tok_sub)
    ids, mask = tokenize(tok_path, max_length, tag)
    vocab = len(json.load(open(os.path.join(tok_path, "tokenizer.json")))["model"]["vocab"])
    cfg = T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        num_heads=4,
        num_layers=2,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        **cfg_kw,
    )
    model = T5EncoderModel(cfg)
    set_seeded_random(model, seed)
    model.save_pretrained(os.path.join(OUT, folder, enc_sub))
    print("  saved T5EncoderModel", sorted(model.state_dict().keys())[:6], "...")

    def fwd(m):
        # FLUX calls text_encoder_2(ids) without a mask; PixArt passes the tokenizer's attention mask.
        return m(ids, attention_mask=mask if with_mask else None).last_hidden_state

    h32, h64 = run_both(model, fwd)
    T[f"{tag}.last_hidden_state"] = h64.float()
    T[f"{tag}.last_hidden_state_f32"] = h32.float()


def text_stage():
    from safetensors.torch import save_file

    def part(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except Exception:
            traceback.print_exc()
            FAILED.append(f"text:{a[-1] if a else fn.__name__}")

    part(clip_stage_for, "flux", {"hidden_act": "quick_gelu", "eos_token_id": 2}, "CLIPTextModel", 101, "flux.clip")
    part(
        t5_stage_for, "flux", "tokenizer_2", "text_encoder_2", 512, False, 102, "flux.t5", d_ff=48,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
    )
    part(
        t5_stage_for, "pixart", "tokenizer", "text_encoder", 300, True, 103, "pixart.t5", d_ff=40,
        relative_attention_num_buckets=16, relative_attention_max_distance=64,
    )
    tj = json.load(open(os.path.join(OUT, "clip-proj/tokenizer/tokenizer.json")))
    eos = {a["content"]: a["id"] for a in tj["added_tokens"]}["<|endoftext|>"]
    part(clip_stage_for, "clip-proj", {"hidden_act": "gelu", "eos_token_id": eos}, "CLIPTextModelWithProjection", 104, "proj.clip")
    save_file({k: v.contiguous() for k, v in T.items()}, os.path.join(OUT, "text.safetensors"), metadata={"prompts": json.dumps(PROMPTS)})


def vae_stage():
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    V = {}
    cases = [
        # FLUX.1's VAE: 16 latent channels, scaling 0.3611, shift 0.1159, no (post_)quant_conv
        ("flux", dict(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False), 201),
        # PixArt-Sigma's (SDXL) VAE: 4 latent channels, scaling 0.13025, quant convs
        ("pixart", dict(latent_channels=4, scaling_factor=0.13025, use_quant_conv=True, use_post_quant_conv=True), 202),
    ]
    for tag, kw, seed in cases:
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(8, 16, 16),
            layers_per_block=1,
            norm_num_groups=4,
            sample_size=32,
            **kw,
        )
        set_seeded_random(vae, seed, scale=1.0)
        vae.save_pretrained(os.path.join(OUT, tag, "vae"))
        g = torch.Generator().manual_seed(seed + 1000)
        c = kw["latent_channels"]
        h, w = 6, 4  # latent grid (non-square): image 24 x 16
        if tag == "flux":
            # the pipeline's packed latents [B, (h/2)(w/2), 4c], unpacked then un-scaled/shifted
            packed = torch.randn(1, (h // 2) * (w // 2), c * 4, generator=g, dtype=torch.float64).float()
            lat = packed.view(1, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, c, h, w)
            V["flux.packed"] = packed
            V["flux.unpacked"] = lat.clone()
            z = lat / vae.config.scaling_factor + vae.config.shift_factor
        else:
            lat = torch.randn(2, c, h, w, generator=g, dtype=torch.float64).float()
            V["pixart.latents"] = lat
            z = lat / vae.config.scaling_factor
        V[f"{tag}.z"] = z.float()
        i32, i64 = run_both(vae, lambda m: m.decode(z.to(next(m.parameters()).dtype), return_dict=False)[0])
        V[f"{tag}.image"] = i64.float()
        V[f"{tag}.image_f32"] = i32.float()
        print(f"  {tag}: image {tuple(i64.shape)}, |x| max {i64.abs().max().item():.3g}")
    save_file({k: v.contiguous() for k, v in V.items()}, os.path.join(OUT, "vae.safetensors"))


def samplers_stage():
    import numpy as np
    import torch
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
    try:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
    except Exception as e:  # noqa: BLE001  (the FLUX pipeline module imports many transformers classes)
        print("  pipeline_flux import failed, using its two functions' definitions:", repr(e)[:200])

        def calculate_shift(image_seq_len, base_seq_len=256, max_seq_len=4096, base_shift=0.5, max_shift=1.15):
            m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
            b = base_shift - m * base_seq_len
            return image_seq_len * m + b

        def retrieve_timesteps(scheduler, num_inference_steps, device, sigmas=None, **kw):
            scheduler.set_timesteps(sigmas=sigmas, device=device, **kw)
            return scheduler.timesteps, len(scheduler.timesteps)
    from safetensors.torch import save_file

    S = {}
    dev_cfg = dict(  # FLUX.1-dev scheduler/scheduler_config.json
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    schnell_cfg = dict(  # FLUX.1-schnell scheduler/scheduler_config.json
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    FlowMatchEulerDiscreteScheduler(**dev_cfg).save_config(os.path.join(OUT, "flux/scheduler"))

    def flux_schedule(cfg, steps, seq):
        sch = FlowMatchEulerDiscreteScheduler(**cfg)
        sigmas = np.linspace(1.0, 1 / steps, steps)  # as FluxPipeline.__call__
        mu = calculate_shift(seq, sch.config.get("base_image_seq_len", 256), sch.config.get("max_image_seq_len", 4096),
                             sch.config.get("base_shift", 0.5), sch.config.get("max_shift", 1.15))
        ts, n = retrieve_timesteps(sch, steps, "cpu", sigmas=sigmas, mu=mu)
        return sch, ts, mu

    cases = [("dev", dev_cfg, 50, 1024), ("dev", dev_cfg, 28, 4096), ("dev", dev_cfg, 50, 4080), ("dev", dev_cfg, 20, 256),
             ("dev", dev_cfg, 30, 6000), ("schnell", schnell_cfg, 4, 4096), ("schnell", schnell_cfg, 4, 1024)]
    for name, cfg, steps, seq in cases:
        tag = f"flow.{name}.{steps}.{seq}"
        sch, ts, mu = flux_schedule(cfg, steps, seq)
        S[f"{tag}.timesteps"] = ts.float()
        S[f"{tag}.sigmas"] = sch.sigmas.float()
        S[f"{tag}.mu"] = torch.tensor([mu], dtype=torch.float64)
        # trajectory on seeded random model outputs (a sample of 2 x 8 x 4, the packed-latent layout)
        if (name, steps, seq) in [("dev", 50, 1024), ("schnell", 4, 4096), ("dev", 28, 4096)]:
            g = torch.Generator().manual_seed(300 + steps + seq)
            x = torch.randn(2, 8, 4, generator=g, dtype=torch.float64).float()
            S[f"{tag}.x0"] = x.clone()
            outs, xs = [], []
            for t in ts:
                v = (torch.randn(2, 8, 4, generator=g, dtype=torch.float64) + 0.3 * x.double()).float()
                x = sch.step(v, t, x, return_dict=False)[0]
                outs.append(v)
                xs.append(x)
            S[f"{tag}.model_outputs"] = torch.stack(outs)
            S[f"{tag}.samples"] = torch.stack(xs)

    # PixArt-Sigma: DPMSolverMultistepScheduler() defaults (scripts/convert_pixart_sigma_to_diffusers.py)
    dpm = DPMSolverMultistepScheduler()
    dpm.save_config(os.path.join(OUT, "pixart/scheduler"))
    S["dpm.alphas_cumprod"] = dpm.alphas_cumprod.float()
    for steps in (20, 10, 25, 1, 2):
        tag = f"dpm.{steps}"
        sch = DPMSolverMultistepScheduler()
        sch.set_timesteps(steps, device="cpu")
        S[f"{tag}.timesteps"] = sch.timesteps.clone()
        S[f"{tag}.sigmas"] = sch.sigmas.float()
        if steps in (20, 10, 2):
            g = torch.Generator().manual_seed(400 + steps)
            x = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64).float()
            S[f"{tag}.x0"] = x.clone()
            guidance = 4.5
            unc, txt, xs = [], [], []
            for t in sch.timesteps:
                # learned-sigma output (8 channels = 2 x latent), uncond and text halves of a CFG batch
                u = (torch.randn(1, 8, 4, 4, generator=g, dtype=torch.float64) + 0.5 * torch.cat([x, x], 1).double()).float()
                c = (torch.randn(1, 8, 4, 4, generator=g, dtype=torch.float64) + 0.5 * torch.cat([x, x], 1).double()).float()
                noise_pred = u + guidance * (c - u)  # PixArtSigmaPipeline's CFG
                noise_pred = noise_pred.chunk(2, dim=1)[0]  # learned sigma: keep the epsilon half
                x = sch.step(noise_pred, t, x, return_dict=False)[0]
                unc.append(u)
                txt.append(c)
                xs.append(x)
            S[f"{tag}.uncond"] = torch.stack(unc)
            S[f"{tag}.text"] = torch.stack(txt)
            S[f"{tag}.samples"] = torch.stack(xs)
    save_file({k: v.contiguous() for k, v in S.items()}, os.path.join(OUT, "samplers.safetensors"))


def layout_stage():
    write_json(os.path.join(OUT, "flux/model_index.json"), {
        "_class_name": "FluxPipeline",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    write_json(os.path.join(OUT, "pixart/model_index.json"), {
        "_class_name": "PixArtSigmaPipeline",
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"],
        "vae": ["diffusers", "AutoencoderKL"],
    })


if __name__ == "__main__":
    stage(tokenizers_stage)
    if not TOKENIZERS_ONLY:
        import torch

        torch.manual_seed(0)
        torch.set_num_threads(4)
        print("torch", torch.__version__)
        import diffusers
        import transformers

        print("diffusers", diffusers.__version__, "transformers", transformers.__version__)
        stage(layout_stage)
        stage(samplers_stage)
        stage(text_stage)
        stage(vae_stage)
    print("FAILED:", FAILED if FAILED else "none")
    sys.exit(1 if FAILED else 0)
