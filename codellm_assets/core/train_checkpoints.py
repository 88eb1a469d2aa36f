"""Compatibility: every MLflow model version registered before core/ was grouped by stage logged a pyfunc
file that imports ``codellm_assets.core.train_checkpoints`` when it loads. Those versions must keep loading,
so this old path stays, re-exporting :mod:`codellm_assets.core.training.checkpoints`. New code imports that."""

from codellm_assets.core.training.checkpoints import *  # noqa: F403
from codellm_assets.core.training.checkpoints import base_model_fingerprint  # noqa: F401
