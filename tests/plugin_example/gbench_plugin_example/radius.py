"""Radius error: how far the samples' median distance from the reference centroid is from the
reference points' own, relative to it (2-D data; 0 is a perfect match, lower is better)."""

import numpy as np

from generative_bench.evaluation.schema import Metric, Output, register


def _radius_error(inp):
    ref = np.asarray(inp.reference_points, dtype=np.float64)
    samples = np.asarray(inp.samples, dtype=np.float64)
    centre = ref.mean(axis=0)
    r_ref = np.median(np.linalg.norm(ref - centre, axis=1))
    r_samples = np.median(np.linalg.norm(samples - centre, axis=1))
    return {"radius_error": float(abs(r_samples - r_ref) / r_ref)}, {"statistic": "median distance to the centroid"}


register(Metric("radius", "toy", compute=_radius_error, description="median radius of the samples vs the data's",
                outputs=(Output("radius_error", "Radius error", "lower", digits=3,
                                note="Radius error: |median sample radius - median data radius| / median data "
                                     "radius, about the reference centroid."),)))
