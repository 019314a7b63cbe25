"""Gaussian diffusion core (schedules, q/p moments, losses, samplers, respacing, the variational
bound) and the DDPM / improved-DDPM backend built on it."""

from generative_bench.backends.diffusion.backend import DiffusionBackend
from generative_bench.backends.diffusion.gaussian import GaussianDiffusion
from generative_bench.backends.diffusion.respace import respace, space_timesteps
from generative_bench.backends.diffusion.schedules import cosine_betas, linear_betas, make_betas

__all__ = ["DiffusionBackend", "GaussianDiffusion", "respace", "space_timesteps", "cosine_betas", "linear_betas",
           "make_betas"]
