"""Networks shared by the backends (UNet for image diffusion, MLP denoiser for 2-D data, ...)."""
