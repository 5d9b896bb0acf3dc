"""Image features kept between runs, so that new prompts on old scenes skip the image encoder.

:mod:`.keys` says what an entry is keyed by, :mod:`.store` how an entry sits on disk,
:mod:`.eviction` how the folder stays under its bound, and :mod:`.cache` ties them to the
predictor.
"""

from diffris.inference.feature_cache.cache import (
    DEFAULT_MAX_BYTES,
    CacheDtype,
    FeatureCache,
    FeatureCacheOptions,
    SceneFeatures,
    prepare_cache_folder,
    scene_features,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "CacheDtype",
    "FeatureCache",
    "FeatureCacheOptions",
    "SceneFeatures",
    "prepare_cache_folder",
    "scene_features",
]
