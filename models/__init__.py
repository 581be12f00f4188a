"""Models and what computes on their outputs: the SpaDe network (docs/model.md), its loss, the
fused inference path, the ONNX export and the non-learned baselines. A new network, loss or
predictor goes here.

    models.spade (SpaDe) + encoder, decoder, unet, layers, radar_mlp, ops
    models.loss          spade_loss(preds, batch, cfg.loss)
    models.inference     the fused inference path behind SpaDe.predict
    models.onnx_export   ONNX export of SpaDe.predict and its onnxruntime check
    models.baselines     radar-column and row-median depth predictors
"""
from models.ops import downscale_bilinear, pad_to_network, padded_size, scatter_downscale
from models.spade import SpaDe

__all__ = ["SpaDe", "padded_size", "pad_to_network", "scatter_downscale", "downscale_bilinear"]
