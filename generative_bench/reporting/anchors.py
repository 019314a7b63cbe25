"""Published reference figures, shown for context only and never mixed into measured rows.

They were made with each paper's own protocol (official CIFAR-10, the paper's sample counts,
the TF Inception network, full-size models and budgets), so they are not numbers this suite
measured. Each entry names its source. Checked against the paper text: DDPM Table 1, SNGAN
Table 2 and Appendix B.1, NVAE's abstract (2.98 -> 2.91 bits/dim on CIFAR-10). The improved DDPM
rows (Table 2, the CIFAR-10 ablation) were checked against a transcription of that table; confirm
them against the paper before quoting them elsewhere.
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
)

ANCHOR_COLUMNS = ("FID", "IS", "NLL (bits/dim)")


def anchors_frame(families: set[str] | None = None) -> pd.DataFrame:
    """One row per anchor (strings), optionally only for the model families in a report."""
    rows = []
    for a in ANCHORS:
        if families is not None and a.family not in families:
            continue
        row = {"Model": a.model, "Source": a.source, "Dataset": a.dataset}
        row.update({c: a.figures.get(c, "") for c in ANCHOR_COLUMNS})
        row["Protocol"] = a.protocol
        rows.append(row)
    return pd.DataFrame(rows, columns=["Model", "Source", "Dataset", *ANCHOR_COLUMNS, "Protocol"])


ANCHOR_NOTE = ("These numbers come from the papers, not from these runs: full-size models and training budgets, "
               "the official CIFAR-10 release and each paper's own sample counts and reference sets. "
               "They are not comparable to the measured tables unless the protocol fingerprint matches.")

__all__ = ["ANCHORS", "ANCHOR_HEADING", "ANCHOR_NOTE", "Anchor", "anchors_frame"]
