"""TinyViT, the image encoder of LiteMedSAM, written from the architecture's description.

TinyViT (Wu et al., ECCV 2022) has four stages: MBConv blocks, then three stages
of windowed self-attention blocks, each followed by a depthwise "local"
convolution and an MLP; stages are joined by patch-merging convolutions. SAM's
distilled variants add a neck that projects to SAM's 256-channel embedding.
LiteMedSAM keeps the token grid at 64x64 for a 256x256 input: its patch
embedding is two pointwise convolutions (no downsampling) and its last merge has
stride 1. Module names follow the published checkpoints so that their state
dicts load strictly.

Attention biases are indexed from the learned table on every forward pass, so
loading new weights can never leave a stale cached copy behind. The encoder
takes optional deep prompts (visual prompt tuning, Jia et al. 2022): learned
tokens per attention block that every window attends to (see `WindowAttention`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medprompt.backbones.sam_modeling import LayerNorm2d


class ConvBN(nn.Sequential):
    """Convolution without bias followed by batch norm (children `c` and `bn`)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)


class PatchEmbed(nn.Module):
    """Two pointwise conv-BN layers with a GELU between them: 3 -> dim/2 -> dim channels, same resolution."""

    def __init__(self, in_chans: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_chans, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: pointwise expansion, depthwise 3x3, pointwise projection, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """Pointwise, strided depthwise 3x3, pointwise: changes the width and (stride 2) halves the grid."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


def relative_offset_index(window: int) -> torch.Tensor:
    """[N,N] index into a table of window*window biases: |dy| * window + |dx| for every pair of positions."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    return (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window, with a learned bias per head and relative offset."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("offset_index", relative_offset_index(window), persistent=False)

    def forward(self, x: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """x [B',N,C] tokens of B' windows -> [B',N,C]; `prompts` [P,C] join every window's tokens.

        A prompt token's own output is discarded (the next block has its own prompts), so the prompts enter only
        as keys and values, normed and projected like the window's tokens, with no positional bias.
        """
        b, n, c = x.shape
        q, k, v = self._qkv(x)
        bias = self.attention_biases[:, self.offset_index].to(q.dtype)
        if prompts is not None:
            _, pk, pv = self._qkv(prompts.to(x.dtype).unsqueeze(0))
            k = torch.cat([k, pk.expand(b, -1, -1, -1)], dim=2)
            v = torch.cat([v, pv.expand(b, -1, -1, -1)], dim=2)
            bias = F.pad(bias, (0, prompts.shape[0]))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        """Queries, keys and values [3,B',heads,N,C/heads] of tokens [B',N,C]."""
        b, n, c = x.shape
        # per head, the projection holds q, k and v side by side
        return self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, c // self.num_heads).permute(3, 0, 2, 1, 4)


class Mlp(nn.Module):
    """Pre-norm two-layer MLP with GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention (residual), depthwise 3x3 local convolution, MLP (residual); tokens [B,H,W,C]."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self._windowed_attention(x, prompts)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)

    def _windowed_attention(self, x: torch.Tensor, prompts: torch.Tensor | None) -> torch.Tensor:
        """Attention within non-overlapping windows; the grid is zero-padded at the bottom/right to whole windows."""
        b, h, w, c = x.shape
        s = self.window
        pad_h, pad_w = (-h) % s, (-w) % s
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        nh, nw = (h + pad_h) // s, (w + pad_w) // s
        windows = x.reshape(b, nh, s, nw, s, c).transpose(2, 3).reshape(b * nh * nw, s * s, c)
        out = self.attn(windows, prompts).view(b, nh, nw, s, s, c).transpose(2, 3).reshape(b, nh * s, nw * s, c)
        return out[:, :h, :w]


class ConvStage(nn.Module):
    """The first stage: MBConv blocks, then a patch merge."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class AttentionStage(nn.Module):
    """A stage of TinyViT blocks, then a patch merge unless it is the last stage."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 out_dim: int | None, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window, mlp_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """`prompts`: one [P,C] tensor per block, or None."""
        x = x.permute(0, 2, 3, 1)
        for i, block in enumerate(self.blocks):
            x = block(x, None if prompts is None else prompts[i])
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """Image [B,3,S,S] -> embedding [B,out_chans,S/(prod of strides),...] through four stages and SAM's neck."""

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        merge_strides: Sequence[int] = (2, 2, 1),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        out_chans: int = 256,
        in_chans: int = 3,
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        stages: list[nn.Module] = [ConvStage(embed_dims[0], depths[0], mbconv_expand_ratio, embed_dims[1], merge_strides[0])]
        for i in range(1, len(embed_dims)):
            last = i == len(embed_dims) - 1
            stages.append(AttentionStage(embed_dims[i], depths[i], num_heads[i], window_sizes[i], mlp_ratio,
                                         None if last else embed_dims[i + 1], 1 if last else merge_strides[i]))
        self.layers = nn.ModuleList(stages)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def prompt_dims(self) -> tuple[int, ...]:
        """Width of each attention block, in order: the deep prompts `forward` takes are [P, width] per block."""
        return tuple(stage.blocks[0].attn.qkv.in_features for stage in self.layers[1:] for _ in stage.blocks)

    def forward(self, x: torch.Tensor, prompts: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """`prompts`: deep prompts, one [P, width] tensor per attention block (`prompt_dims`), or None."""
        if prompts is not None and len(prompts) != len(self.prompt_dims):
            raise ValueError(f"{len(prompts)} prompt tensors for {len(self.prompt_dims)} attention blocks")
        # channels-last: faster convolutions on CPUs, and the attention stages' token layout for free
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        x = self.layers[0](x)
        start = 0
        for stage in self.layers[1:]:
            depth = len(stage.blocks)
            x = stage(x, None if prompts is None else prompts[start : start + depth])
            start += depth
        return self.neck(x)
