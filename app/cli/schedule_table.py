"""The numbers behind ``diffusion-workbench schedule``: one row per timestep
(t, β_t, ᾱ_t, σ_t, SNR_t), all of them or those N sampling steps visit."""
from __future__ import annotations


def schedule_rows(name: str, timesteps: int, zero_snr: bool, steps: int | None, spacing: str):
    """Rows of (t, beta, alpha_bar, sigma, snr); Karras levels give fractional t and no β."""
    import torch

    from core.diffusion.schedules import make_schedule
    from core.diffusion.timesteps import karras_sigmas, spaced_timesteps

    table = make_schedule(name, timesteps, zero_snr)
    if steps is None:
        picked = torch.arange(table.num_timesteps - 1, -1, -1, dtype=torch.float64)
    elif spacing == "karras":
        sigmas = karras_sigmas(table.sigma_min, table.sigma_max, steps)[:-1]
        picked = table.sigma_to_t(sigmas)
    else:
        picked = spaced_timesteps(table.num_timesteps, steps, spacing).double()
    rows = []
    for t in picked.tolist():
        index = round(t)
        if abs(t - index) < 1e-9:
            t = index
            beta, alpha_bar = float(table.betas[index]), float(table.alphas_cumprod[index])
            sigma, snr = float(table.sigmas[index]), float(table.snr[index])
        else:  # between two table entries (Karras): read σ off the log-σ interpolation
            sigma = float(table.t_to_sigma(torch.tensor(t)))
            alpha_bar = 1 / (1 + sigma**2)
            beta, snr = None, 1 / sigma**2  # β belongs to whole timesteps only
        rows.append((t, beta, alpha_bar, sigma, snr))
    return rows
