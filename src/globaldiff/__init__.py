"""GlobalDiff reproduction library: data, item similarity, backbones, diffusion, fusion, metrics."""

__version__ = "0.1.0"


class ConfigError(ValueError):
    """Bad params, bad input data or an incompatible artefact; the message names the file/key and what was expected."""
