"""helpers: the package behind the book "Face latent spaces, reproduced".

Modules: config (profiles, parameter checks), train (one training loop, checkpoint cache), runs (metrics.json),
render (differentiable face renderer), data (SynthFaces, the common dataset format, transforms, label sets),
viz (figures and players), widgets (live sliders), book (headless runs of the notebooks).
"""
__version__ = "0.1.0"
