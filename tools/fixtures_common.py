"""Helpers shared by the fixture scripts (tools/make-*.py import it from their own folder)."""


def set_seeded_random(model, seed, scale=0.2):
    """Seeded normal weights (norm weights around 1) so every parameter matters.

    Norm weights 1 + 0.2·N(0,1), biases 0.1·N(0,1), matrices N(0,1)·max(scale, 1)/√fan_in, embedding tables
    0.5·N(0,1) (T5's relative attention bias 1·N(0,1)), other vectors scale·N(0,1); parameters in name order, one
    float64 torch.Generator seeded with `seed`.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            else:
                fan_in = p.shape[-1] if p.dim() == 2 else (p[0].numel() if p.dim() == 4 else 1)
                s = scale if p.dim() < 2 else max(scale, 1.0) / (fan_in**0.5)
                if "embedding" in name or "shared" in name or "relative_attention_bias" in name:
                    s = 1.0 if "relative_attention_bias" in name else 0.5
                p.copy_(s * r)
