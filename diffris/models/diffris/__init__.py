"""DiffRIS: frozen Stable Diffusion + CLIP backbone, trainable CP-adapter and PCMRD decoder.

Sizes and presets live in :mod:`diffris.models.diffris.build`; the composed model in
:mod:`diffris.models.diffris.model`.
"""
