"""Normalizing-flow backend: multi-scale Glow for images, a coupling flow for vectors, exact
(dequantized for 8-bit images) likelihood and temperature sampling."""

from generative_bench.backends.flow.backend import FlowBackend, quantize_8bit
from generative_bench.backends.flow.nets import CouplingVectorFlow, GlowImageFlow, MultiScaleFlow

__all__ = ["CouplingVectorFlow", "FlowBackend", "GlowImageFlow", "MultiScaleFlow", "quantize_8bit"]
