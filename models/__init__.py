"""SpaDe network (docs/spade.md section 3) and the resampling ops it shares with the loss."""
from models.ops import downscale_bilinear, pad_to_network, padded_size, scatter_downscale
from models.spade import SpaDe

__all__ = ["SpaDe", "padded_size", "pad_to_network", "scatter_downscale", "downscale_bilinear"]
