"""Fast inference path of SpaDe: the depth-only network with batch norm folded into the convs.

    depth_m = fused_for(model)(img, radar_map, radar_pts, radar_count)   # what SpaDe.predict does

`FusedSpaDe` is built from an eval-mode `SpaDe` and computes exactly `predict`'s output (the
cropped `depth_s1`) up to float rounding, doing only the work that output needs:
- every conv + BN (`ConvBnAct`, `Resize`) becomes one conv with folded weights (the BN always
  follows its conv directly; the sums in bottlenecks, refines and separable scores come after);
- the mask decoders are dropped (the masks feed nothing), and so is the depth decoder's last step
  in G1 and G2 (only their handed-on step-4 feature is used): 60.9 -> 43.8 GFLOP at 1024x1792;
- the radar-map scatter works on f x f blocks of the padded map (`scatter_downscale_blocks`), with
  no H x W index grids, and the padded input lives in a zeroed buffer kept per input shape;
- the stems of G2 and G3 take the x4-upsampled feature algebraically (`UpsampledStem`): the
  full-size upsampled map and the concatenation are never made;
- optional (`InferenceOptions`): channels-last tensors, transposed convs as 1x1 conv + pixel
  shuffle, bf16 autocast, `torch.compile` (modes "reduce-overhead" and "max-autotune" add CUDA
  graphs; the output is then copied out of the graph's buffer).

Cache (`fused_for`): the copy is kept on the model, keyed on the options, the device and every
parameter's and buffer's storage and version counter, so that an optimizer step,
`load_state_dict`, a train-mode forward (BN statistics) or `.to(device)` rebuilds it on the next
call. Edits made through `tensor.data` bypass version counters, and the module list is the one
seen at build time: call `drop_fused(model)` after such edits or after replacing a submodule.
The training model's modules and weights are never touched (the copy owns its tensors).
Not thread-safe: one caller per model at a time (the padding buffer is shared).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from models.decoder import HANDED_ON_STEP, run_decoder
from models.layers import ConvBnAct, Resize
from models.ops import downscale_bilinear, padded_size
from models.unet import DEPTH_PREFIX

CACHE_ATTR = "_fused_inference"


@dataclass(frozen=True)
class InferenceOptions:
    """How `FusedSpaDe` runs. The defaults are exact (fp32) and fastest on CPU."""
    channels_last: bool = True        # NHWC activations and weights (oneDNN / cuDNN favour it)
    deconv_as_shuffle: bool = False   # 2x2/2 transposed conv as 1x1 conv + pixel_shuffle
    fold_upsample: bool = True        # G2/G3 stem conv applied to the x4 upsampling algebraically
    bf16: bool = False                # autocast to bfloat16 (for CUDA; runs, slowly, on CPU)
    compile_mode: str = ""            # "" = eager, else a torch.compile mode, e.g. "default",
    #                                   "max-autotune-no-cudagraphs", "reduce-overhead" (CUDA graphs)
    compile_backend: str = "inductor"  # torch.compile backend ("eager" only traces: for tests)

    @property
    def cuda_graphs(self) -> bool:
        """torch.compile modes that replay CUDA graphs (their outputs are reused buffers)."""
        return self.compile_mode in ("reduce-overhead", "max-autotune")


def fold_bn(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.Module:
    """A new conv equal to bn(conv(x)) with bn in eval mode (running statistics).

    y = (conv(x) - mean) * g / sqrt(var + eps) + b: the output channel o of the weight (dim 0 of
    a Conv2d weight, dim 1 of an ungrouped ConvTranspose2d weight) and the bias are scaled by
    s = g / sqrt(var + eps); the bias also gets b - mean * s. Computed in float64.
    """
    if not bn.track_running_stats or bn.running_var is None:
        raise ValueError("fold_bn needs a BatchNorm2d with running statistics")
    transposed = isinstance(conv, nn.ConvTranspose2d)
    if transposed and conv.groups != 1:
        raise ValueError("fold_bn: grouped transposed convolutions are not supported")
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gain = bn.weight.double() if bn.affine else torch.ones_like(var)
    shift = bn.bias.double() if bn.affine else torch.zeros_like(var)
    scale = gain * torch.rsqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter((conv.weight.double() * scale.reshape(shape)).to(conv.weight.dtype),
                                requires_grad=False)
    fused.bias = nn.Parameter(((bias - mean) * scale + shift).to(conv.weight.dtype),
                              requires_grad=False)
    return fused


class ShuffleDeconv(nn.Module):
    """A 2x2 stride-2 ConvTranspose2d as 1x1 conv to 4 x out channels, then pixel_shuffle(2).

    out[o, 2i + dy, 2j + dx] = sum_c x[c, i, j] W[c, o, dy, dx] + bias[o], so the 1x1 weight row
    o*4 + dy*2 + dx is W[:, o, dy, dx] (pixel_shuffle's channel order).
    """

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        if deconv.kernel_size != (2, 2) or deconv.stride != (2, 2) or deconv.groups != 1:
            raise ValueError("ShuffleDeconv needs an ungrouped 2x2 stride-2 ConvTranspose2d")
        w = deconv.weight.detach()                               # in x out x 2 x 2
        self.conv = nn.Conv2d(w.shape[0], 4 * w.shape[1], 1, bias=True)
        self.conv.weight = nn.Parameter(w.permute(1, 2, 3, 0).reshape(-1, w.shape[0], 1, 1).clone(),
                                        requires_grad=False)
        self.conv.bias = nn.Parameter(deconv.bias.detach().repeat_interleave(4), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


def fold_module(module: nn.Module, deconv_as_shuffle: bool = False) -> nn.Module:
    """Deep copy of `module` with every ConvBnAct / Resize BN folded into its conv (BN -> Identity)."""
    module = copy.deepcopy(module)
    for sub in module.modules():
        if isinstance(sub, ConvBnAct):
            sub.conv, sub.bn = fold_bn(sub.conv, sub.bn), nn.Identity()
        elif isinstance(sub, Resize):
            if sub.bn is not None:
                sub.deconv, sub.bn = fold_bn(sub.deconv, sub.bn), nn.Identity()
            if deconv_as_shuffle:
                sub.deconv = ShuffleDeconv(sub.deconv)
    if any(isinstance(sub, nn.BatchNorm2d) for sub in module.modules()):
        raise RuntimeError("fold_module: a BatchNorm2d outside ConvBnAct/Resize was left unfolded")
    return module


# A 3x3 stride-2 conv on a x4 bilinear upsampling (align_corners=False) of f: output row
# 2i + s, tap d in (-1, 0, 1) reads upsampled row 4i + 2s + d = sum_k PHASE_TAPS[s, d + 1, k] *
# f[i - 1 + k] (f replicate-padded by one row, which is how the upsampling clamps at the edges).
PHASE_TAPS = torch.tensor([[[0.625, 0.375, 0.0], [0.375, 0.625, 0.0], [0.125, 0.875, 0.0]],
                           [[0.125, 0.875, 0.0], [0.0, 0.875, 0.125], [0.0, 0.625, 0.375]]],
                          dtype=torch.float64)


class UpsampledStem(nn.Module):
    """A folded stem `ConvBnAct` (3x3, stride 2, pad 1, ReLU) on cat([base, upsample4(f)]),
    computed without the full-size upsampled map or the concatenation.

    forward((base: B x Cb x H x W, f: B x Cf x H/4 x W/4)) -> B x out x H/2 x W/2.
    The f part is one 3x3 conv on replicate-padded f to 4 x out channels (one per output phase
    (s, t), weights = the stem's weights through PHASE_TAPS in rows and columns) and a
    pixel_shuffle(2). That treats the stem's zero padding at row -1 / column -1 as the
    replicated first upsampled row / column; the exact terms of those taps, computed from the
    first upsampled row and column, are subtracted (the corner tap is in both, so added back).
    """

    def __init__(self, stem: ConvBnAct, base_ch: int):
        super().__init__()
        conv = stem.conv
        if conv.kernel_size != (3, 3) or conv.stride != (2, 2) or conv.padding != (1, 1) \
                or conv.groups != 1 or not isinstance(stem.bn, nn.Identity):
            raise ValueError("UpsampledStem needs a BN-folded 3x3 stride-2 pad-1 ungrouped conv")
        w = conv.weight.detach()
        wf = w[:, base_ch:].double()                                  # out x Cf x 3 x 3
        phases = torch.einsum("ocyx,syk,txl->ostckl", wf, PHASE_TAPS, PHASE_TAPS)
        self.base = nn.Conv2d(base_ch, w.shape[0], 3, stride=2, padding=1)
        self.base.weight = nn.Parameter(w[:, :base_ch].clone(), requires_grad=False)
        self.base.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.register_buffer("phase_weight", phases.reshape(-1, *phases.shape[3:]).to(w.dtype))
        self.register_buffer("edge_weight", wf.to(w.dtype))
        self.act = stem.act

    def forward(self, inputs: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        base, f = inputs
        wf = self.edge_weight.to(f.dtype)
        y = F.pixel_shuffle(F.conv2d(F.pad(f, (1, 1, 1, 1), mode="replicate"),
                                     self.phase_weight.to(f.dtype)), 2)
        n, m = f.shape[-2:]
        row = F.interpolate(f[:, :, :1], size=(1, 4 * m), mode="bilinear", align_corners=False)
        col = F.interpolate(f[:, :, :, :1], size=(4 * n, 1), mode="bilinear", align_corners=False)
        y[:, :, :1] -= F.conv2d(F.pad(row, (1, 0, 0, 0), mode="replicate"), wf[:, :, :1], stride=(1, 2))
        y[:, :, :, :1] -= F.conv2d(F.pad(col, (0, 0, 1, 0), mode="replicate"), wf[..., :1], stride=(2, 1))
        y[:, :, 0, 0] += f[:, :, 0, 0] @ wf[:, :, 0, 0].T
        return self.act(self.base(base) + y)


class DepthUNet(nn.Module):
    """Encoder and the first `steps` depth-decoder steps of a UNet, BN folded.

    x: B x in_ch x S -> steps = 6: depth B x 1 x S (m, after ReLU);
                        steps = 5: the handed-on feature B x 8 x S/2.
    stem_base_ch > 0: the stem is an `UpsampledStem` and x is (base B x stem_base_ch x S,
    feature B x (in_ch - stem_base_ch) x S/4), standing for cat([base, upsample4(feature)]).
    """

    def __init__(self, unet: nn.Module, steps: int, deconv_as_shuffle: bool, stem_base_ch: int = 0):
        super().__init__()
        if steps not in (HANDED_ON_STEP + 1, HANDED_ON_STEP + 2):
            raise ValueError(f"DepthUNet: steps must be {HANDED_ON_STEP + 1} or {HANDED_ON_STEP + 2}")
        self.encoder = fold_module(unet.encoder, deconv_as_shuffle)
        if stem_base_ch:
            self.encoder.conv00 = UpsampledStem(self.encoder.conv00, stem_base_ch)
        self.steps = nn.ModuleList(
            nn.ModuleList(fold_module(m, deconv_as_shuffle) for m in step)
            for step in unet._steps(DEPTH_PREFIX)[:steps])
        self.final = steps == HANDED_ON_STEP + 2

    def forward(self, x: torch.Tensor | Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out, _ = run_decoder(self.steps, self.encoder(x)[::-1])
        return torch.relu(out) if self.final else out


def scatter_downscale_blocks(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`models.ops.scatter_downscale` for H, W multiples of `factor`, on f x f blocks.

    x: B x C x H x W -> B x C x H/f x W/f. Within a block, row-major source order is (dy, dx)
    order, so the winner (last nonzero source) is the largest k = dy * f + dx with x != 0.
    """
    b, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"scatter_downscale_blocks: {h}x{w} is not a multiple of {factor}")
    blocks = x.reshape(b, c, h // factor, factor, w // factor, factor).permute(0, 1, 2, 4, 3, 5)
    blocks = blocks.reshape(b, c, h // factor, w // factor, factor * factor)
    rank = torch.arange(1, factor * factor + 1, device=x.device, dtype=torch.int32)
    winner = torch.where(blocks != 0, rank, 0).argmax(-1, keepdim=True)   # all zero -> 0 -> 0
    return blocks.gather(-1, winner).squeeze(-1)


def _upsample4(feature: torch.Tensor) -> torch.Tensor:
    return F.interpolate(feature, scale_factor=4, mode="bilinear", align_corners=False)


class FusedSpaDe(nn.Module):
    """Depth-only SpaDe for inference, built from an eval-mode `SpaDe` (see the module docstring).

    forward(img, radar_map, radar_pts, radar_count) on any H x W (B x 3 x H x W BGR 0..255, uint8
    or float, copied into a float32 input buffer; B x 1 x H x W m, B x K x 3 m, B int64)
    -> depth B x 1 x H x W (m, float32).
    """

    def __init__(self, model: nn.Module, options: InferenceOptions = InferenceOptions()):
        super().__init__()
        self.options = options
        shuffle, base = options.deconv_as_shuffle, 4 if options.fold_upsample else 0  # img + radar
        self.G1 = DepthUNet(model.G1, HANDED_ON_STEP + 1, shuffle)
        self.G2 = DepthUNet(model.G2, HANDED_ON_STEP + 1, shuffle, base)
        self.G3 = DepthUNet(model.G3, HANDED_ON_STEP + 2, shuffle, base)
        self.radar_encoder = copy.deepcopy(model.calibrated_params_encoder).requires_grad_(False)
        self.radar_injection = model.radar_injection
        if options.channels_last:
            self.to(memory_format=torch.channels_last)
        self._padded_inputs: Dict[Tuple, torch.Tensor] = {}
        self.network = (torch.compile(self.padded_forward, mode=options.compile_mode,
                                      backend=options.compile_backend, dynamic=False)
                        if options.compile_mode else self.padded_forward)

    def padded_input(self, img: torch.Tensor, radar_map: torch.Tensor) -> torch.Tensor:
        """B x 4 x Hp x Wp: [img, radar_map] zero padded as released, in a buffer kept per input
        shape (the padding is written once; each call fills only the top-left H x W)."""
        b, _, h, w = img.shape
        key = (b, h, w, img.device)
        buffer = self._padded_inputs.get(key)
        if buffer is None:
            fmt = torch.channels_last if self.options.channels_last else torch.contiguous_format
            with torch.inference_mode(False):   # a normal tensor: writable in every grad mode
                buffer = torch.empty(b, 4, *padded_size(h, w), device=img.device,
                                     memory_format=fmt).zero_()
            self._padded_inputs = {key: buffer}      # one shape at a time bounds the memory
        buffer[:, :3, :h, :w].copy_(img)
        buffer[:, 3:, :h, :w].copy_(radar_map)
        return buffer

    def padded_forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: B x 4 x Hp x Wp ([img, radar]); emb: B x 8 x 1 x 1 -> depth B x 1 x Hp x Wp."""
        img, radar = x[:, :3], x[:, 3:]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.options.bf16):
            f4 = self.G1(torch.cat([downscale_bilinear(img, 4), scatter_downscale_blocks(radar, 4)], 1))
            x2 = torch.cat([downscale_bilinear(img, 2), scatter_downscale_blocks(radar, 2)], 1)
            f2 = self.G2(self._with_feature(x2, f4 + emb.to(f4.dtype)))
            depth = self.G3(self._with_feature(x, f2 + emb.to(f2.dtype)))
        return depth.float()

    def _with_feature(self, base: torch.Tensor, feature: torch.Tensor):
        """The next stage's input cat([base, upsample4(feature)]), or the pair that an
        `UpsampledStem` takes instead."""
        if self.options.fold_upsample:
            return base, feature
        return torch.cat([base, _upsample4(feature)], 1)

    @torch.no_grad()
    def forward(self, img: torch.Tensor, radar_map: torch.Tensor, radar_pts: torch.Tensor,
                radar_count: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        if self.radar_injection:
            emb = self.radar_encoder(radar_pts, radar_count)[..., None, None]
        else:
            emb = radar_pts.new_zeros(radar_pts.shape[0], 8, 1, 1)
        if self.options.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()    # each call is a new replay
        depth = self.network(self.padded_input(img, radar_map), emb)[..., :h, :w]
        # a CUDA-graph replay overwrites its outputs: hand out a copy that outlives the next call
        return depth.clone() if self.options.cuda_graphs else depth


def _weights_key(modules: List[nn.Module]) -> Optional[Tuple]:
    """Storage and version of every parameter and buffer of `modules`; None when one is an
    inference tensor (made under torch.inference_mode), which has no version counter."""
    tensors = [t for m in modules for d in (m._parameters, m._buffers) for t in d.values()
               if t is not None]
    if any(t.is_inference() for t in tensors):
        return None
    return tuple((t.data_ptr(), t._version) for t in tensors)


def fused_for(model: nn.Module, options: Optional[InferenceOptions] = None) -> FusedSpaDe:
    """The cached `FusedSpaDe` of an eval-mode `model`, rebuilt when the options, a weight or
    its device changed (about 2 ms of checks per call). options: default
    `model.inference_options`. The module list is taken when the copy is built: after replacing
    a submodule, call `drop_fused(model)`."""
    if model.training:
        raise RuntimeError("fused_for needs model.eval(): BN folding uses the running statistics")
    options = options or model.inference_options
    cached = model.__dict__.get(CACHE_ATTR)
    modules = cached[0] if cached is not None else list(model.modules())
    key = (options, model.radar_injection, _weights_key(modules))
    if cached is not None and cached[1] == key and key[-1] is not None:
        return cached[2]
    with torch.inference_mode(False), torch.no_grad():
        fused = FusedSpaDe(model, options).eval()
    model.__dict__[CACHE_ATTR] = (modules, key, fused)   # __dict__: no submodule, no state_dict
    return fused


def drop_fused(model: nn.Module) -> None:
    """Forget the cached fused copy (after editing weights through `tensor.data`)."""
    model.__dict__.pop(CACHE_ATTR, None)
