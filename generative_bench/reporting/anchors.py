"""Published reference figures, shown for context only and never mixed into measured rows.

They were made with each paper's own protocol (official CIFAR-10, the paper's sample counts,
the TF Inception network, full-size models and budgets), so they are not numbers this suite
measured. Each entry names its source. Checked against the paper text: DDPM Table 1, SNGAN
Table 2 and Appendix B.1, NVAE's abstract (2.98 -> 2.91 bits/dim on CIFAR-10), latent diffusion's
Table 1 (unconditional 256×256; the paper has no CIFAR-10 model and no NLL) and Table 3 (ImageNet,
in the guidance block), transcribed from the paper text, and its autoencoders' reconstruction
figures from the CompVis/latent-diffusion README (:data:`FIRST_STAGE_ANCHORS`). The improved DDPM
rows (Table 2, the CIFAR-10 ablation) were checked against a transcription of that table; confirm
them against the paper before quoting them elsewhere. The Glow (Table 2) and PixelCNN++ (Table 1)
CIFAR-10 bits/dim are transcribed from those tables the same way.

:data:`GUIDANCE_ANCHORS` are the paper's trade-off picture that the knob sweeps imitate: ADM on
ImageNet 256×256 without and with classifier guidance (Dhariwal & Nichol 2021, Table 4) and
BigGAN-deep with truncation at the same resolution (their Table 5), as transcribed from the
paper; confirm them against it before quoting them elsewhere. They are shown in their own block
whenever a report holds a knob sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

ANCHOR_HEADING = "Published figures — for context only (different protocol, not measured here)"


@dataclass(frozen=True)
class Anchor:
    model: str
    family: str
    source: str
    dataset: str
    protocol: str
    figures: dict[str, str] = field(default_factory=dict)


ANCHORS: tuple[Anchor, ...] = (
    Anchor("DDPM (L_simple)", "diffusion", "Ho, Jain & Abbeel 2020, NeurIPS, Table 1",
           "CIFAR-10 (official), unconditional 32×32",
           "T=1000 linear schedule, ancestral sampling with 1000 steps; FID against the training set; "
           "NLL is the variational bound on the test set (3.72 on train)",
           {"FID": "3.17", "IS": "9.46 ± 0.11", "NLL (bits/dim)": "≤ 3.75"}),
    Anchor("Improved DDPM (L_hybrid, cosine)", "diffusion", "Nichol & Dhariwal 2021, ICML, Table 2",
           "CIFAR-10 (official), unconditional 32×32",
           "ablation setting: T=4000, cosine schedule, learned variances, 500K iterations",
           {"FID": "3.19", "NLL (bits/dim)": "≤ 3.17"}),
    Anchor("Improved DDPM (L_vlb, cosine)", "diffusion", "Nichol & Dhariwal 2021, ICML, Table 2",
           "CIFAR-10 (official), unconditional 32×32",
           "ablation setting: T=4000, cosine schedule, learned variances, 500K iterations; "
           "trained on the bound alone (best NLL, worse FID)",
           {"FID": "11.47", "NLL (bits/dim)": "≤ 2.94"}),
    Anchor("SNGAN, ResNet, hinge loss", "gan", "Miyato et al. 2018, ICLR, Table 2",
           "CIFAR-10 (official), unconditional 32×32",
           "IS over 5,000 samples ×10; FID from 10,000 and 5,000 samples (Appendix B.1)",
           {"FID": "21.7 ± 0.21", "IS": "8.22 ± 0.05"}),
    Anchor("SN-GAN, standard CNN (DCGAN-style)", "gan", "Miyato et al. 2018, ICLR, Table 2",
           "CIFAR-10 (official), unconditional 32×32",
           "non-saturating loss, 100K generator updates; IS over 5,000 samples ×10; "
           "FID from 10,000 and 5,000 samples",
           {"FID": "29.3", "IS": "7.42 ± 0.08"}),
    Anchor("SN-GAN, standard CNN, hinge loss", "gan", "Miyato et al. 2018, ICLR, Table 2",
           "CIFAR-10 (official), unconditional 32×32",
           "hinge loss (their Eq. 17), otherwise as the row above",
           {"FID": "25.5", "IS": "7.58 ± 0.12"}),
    Anchor("NVAE", "vae", "Vahdat & Kautz 2020, NeurIPS (abstract)",
           "CIFAR-10 (official), 32×32", "NLL of the paper's best CIFAR-10 hierarchical VAE",
           {"NLL (bits/dim)": "2.91"}),
    Anchor("Glow (affine coupling, learned 1×1 convolutions)", "flow", "Kingma & Dhariwal 2018, NeurIPS, Table 2",
           "CIFAR-10 (official), unconditional 32×32",
           "multi-scale flow, 3 levels × 32 steps, coupling networks of 512 channels; test NLL of the "
           "dequantized 8-bit data (RealNVP: 3.49 in the same table)",
           {"NLL (bits/dim)": "3.35"}),
    Anchor("PixelCNN++", "autoregressive", "Salimans et al. 2017, ICLR, Table 1",
           "CIFAR-10 (official), unconditional 32×32",
           "discretized logistic mixture (10 components) over whole pixels, 6 blocks of 5 gated ResNet layers "
           "with 160 filters, down/up-sampling, dropout 0.5; exact test NLL",
           {"NLL (bits/dim)": "2.92"}),
    # latent diffusion reports no CIFAR-10 model and no NLL: its unconditional 256×256 results
    Anchor("LDM-8 (KL-regularised latent)", "latent_diffusion", "Rombach et al. 2022, CVPR, Table 1",
           "LSUN-Churches 256×256, unconditional",
           "f=8 KL-reg. first stage (the table's *), 200 DDIM steps; precision 0.64, recall 0.52",
           {"FID": "4.02"}),
    Anchor("LDM-4", "latent_diffusion", "Rombach et al. 2022, CVPR, Table 1", "CelebA-HQ 256×256, unconditional",
           "f=4 VQ-reg. first stage, 500 DDIM steps; precision 0.72, recall 0.49", {"FID": "5.11"}),
    Anchor("LDM-4", "latent_diffusion", "Rombach et al. 2022, CVPR, Table 1", "FFHQ 256×256, unconditional",
           "f=4 VQ-reg. first stage, 200 DDIM steps; precision 0.73, recall 0.50", {"FID": "4.98"}),
    Anchor("LDM-4", "latent_diffusion", "Rombach et al. 2022, CVPR, Table 1", "LSUN-Bedrooms 256×256, unconditional",
           "f=4 VQ-reg. first stage, 200 DDIM steps; precision 0.66, recall 0.48", {"FID": "2.95"}),
)

GUIDANCE_ANCHORS: tuple[Anchor, ...] = (
    Anchor("ADM, class-conditional, no guidance", "diffusion", "Dhariwal & Nichol 2021, NeurIPS, Table 4",
           "ImageNet 256×256", "250 DDPM steps, 50,000 samples against the training set",
           {"FID": "10.94", "sFID": "6.02", "IS": "100.98", "Precision": "0.69", "Recall": "0.63"}),
    Anchor("ADM, class-conditional, classifier guidance s = 1", "diffusion",
           "Dhariwal & Nichol 2021, NeurIPS, Table 4", "ImageNet 256×256", "as above, noise-aware classifier",
           {"FID": "4.59", "sFID": "5.25", "IS": "186.70", "Precision": "0.82", "Recall": "0.52"}),
    Anchor("ADM, class-conditional, classifier guidance s = 10", "diffusion",
           "Dhariwal & Nichol 2021, NeurIPS, Table 4", "ImageNet 256×256", "as above: fidelity up, diversity down",
           {"FID": "9.11", "sFID": "10.93", "IS": "283.92", "Precision": "0.88", "Recall": "0.32"}),
    Anchor("BigGAN-deep (truncated)", "gan", "Dhariwal & Nichol 2021, NeurIPS, Table 5 (Brock et al. 2019)",
           "ImageNet 256×256", "truncation chosen for the best FID, their evaluation",
           {"FID": "6.95", "sFID": "7.36", "IS": "171.4", "Precision": "0.87", "Recall": "0.28"}),
    Anchor("LDM-4, class-conditional, no guidance", "latent_diffusion", "Rombach et al. 2022, CVPR, Table 3",
           "ImageNet 256×256", "f=4 first stage, 250 DDIM steps, 400M parameters",
           {"FID": "10.56", "IS": "103.49 ± 1.24", "Precision": "0.71", "Recall": "0.62"}),
    Anchor("LDM-4-G, classifier-free guidance s = 1.5", "latent_diffusion", "Rombach et al. 2022, CVPR, Table 3",
           "ImageNet 256×256", "as above; their s = 1.5 is cfg_scale w = s - 1 = 0.5 here",
           {"FID": "3.60", "IS": "247.67 ± 5.59", "Precision": "0.87", "Recall": "0.48"}),
)

#: the first stages of latent diffusion's f-scan (KL-regularised autoencoders), reconstruction quality
FIRST_STAGE_ANCHORS: tuple[Anchor, ...] = tuple(
    Anchor(f"KL autoencoder, f={f}{extra}", "latent_diffusion",
           "CompVis/latent-diffusion README, Pretrained Autoencoding Models (Rombach et al. 2022)",
           "ImageNet validation set", "rFID of reconstructions vs the validation images; PSNR mean ± std per image",
           {"rFID": rfid, "PSNR (dB)": psnr})
    for f, extra, rfid, psnr in ((4, "", "0.27", "27.53 ± 4.54"), (8, "", "0.90", "24.19 ± 4.19"),
                                 (16, " (c=16)", "0.87", "24.08 ± 4.22"), (32, " (c=64)", "2.04", "22.27 ± 3.93")))
FIRST_STAGE_COLUMNS = ("rFID", "PSNR (dB)")
FIRST_STAGE_HEADING = ("Published first-stage reconstructions — for context only: latent diffusion's KL autoencoders "
                       "on ImageNet (different data and protocol, not measured here)")

ANCHOR_COLUMNS = ("FID", "IS", "NLL (bits/dim)")
GUIDANCE_COLUMNS = ("FID", "sFID", "IS", "Precision", "Recall")
GUIDANCE_HEADING = ("Published trade-off — for context only: Diffusion Models Beat GANs on ImageNet 256×256 "
                    "(different data and protocol, not measured here)")


def same_data(anchor_dataset: str, dataset: str) -> bool:
    """Whether an anchor's dataset ("CIFAR-10 (official), unconditional 32×32") is a report's
    dataset (``cifar10``, ``cifar10_jpeg``): the names compared without case and punctuation."""
    def norm(text: str) -> str:
        return "".join(c for c in str(text).lower() if c.isalnum())
    name = norm(dataset).removesuffix("jpeg")
    return bool(name) and norm(anchor_dataset).startswith(name)


def anchors_frame(families: set[str] | None = None, guidance: bool = False, first_stage: bool = False,
                  datasets: set[str] | None = None) -> pd.DataFrame:
    """One row per anchor (strings), optionally only for the model families and the datasets of a
    report; ``guidance`` gives the published trade-off rows instead of the headline ones,
    ``first_stage`` the reconstruction figures of latent diffusion's autoencoders."""
    anchors, columns = (GUIDANCE_ANCHORS, GUIDANCE_COLUMNS) if guidance else (ANCHORS, ANCHOR_COLUMNS)
    if first_stage:
        anchors, columns = FIRST_STAGE_ANCHORS, FIRST_STAGE_COLUMNS
    rows = []
    for a in anchors:
        if families is not None and a.family not in families:
            continue
        if datasets is not None and not any(same_data(a.dataset, d) for d in datasets):
            continue
        row = {"Model": a.model, "Source": a.source, "Dataset": a.dataset}
        row.update({c: a.figures.get(c, "") for c in columns})
        row["Protocol"] = a.protocol
        rows.append(row)
    return pd.DataFrame(rows, columns=["Model", "Source", "Dataset", *columns, "Protocol"])


ANCHOR_NOTE = ("These numbers come from the papers, not from these runs: full-size models and training budgets, "
               "the official CIFAR-10 release and each paper's own sample counts and reference sets. "
               "They are not comparable to the measured tables unless the protocol fingerprint matches.")

__all__ = ["ANCHORS", "ANCHOR_HEADING", "ANCHOR_NOTE", "Anchor", "FIRST_STAGE_ANCHORS", "FIRST_STAGE_HEADING",
           "GUIDANCE_ANCHORS",
           "GUIDANCE_HEADING", "anchors_frame"]
