"""Non-local attention blocks of NVAN / STE-NVAN.

Both blocks take a clip feature map laid out as (N, C, T, H, W), where N is the number of frame
groups the attention runs within (a whole clip, or a pair of consecutive frames), and return a map of
the same shape: z = x + BN(W(y)), y = softmax(theta(x)^T phi(x)) g(x). The logits are NOT divided by
sqrt(d), as in the paper; the output BatchNorm starts at weight 0, bias 0 so every block starts as
the identity.

Attention positions are ordered frame-major: query / key index
  NonLocalBlock:        t * H * W + h * W + w      (keys over (T, H/2, W/2) when subsampled)
  StripeNonLocalBlock:  t * stripes + s            (stripe s covers rows s*H/stripes .. (s+1)*H/stripes - 1)

The attention product runs through ``torch.nn.functional.scaled_dot_product_attention`` (flash /
memory-efficient kernels that never store the (Nq, Nk) matrix) or, with attention='explicit', through
the plain softmax(q k^T) v written out; the two agree to float tolerance and the explicit one is the
reference used by tests and benchmarks.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import ModelConfigError

ATTENTION_IMPLS = ('sdpa', 'explicit')


def check_attention(impl):
    """Refuse an attention implementation other than ATTENTION_IMPLS; returns `impl`."""
    if impl not in ATTENTION_IMPLS:
        raise ModelConfigError(f"attention must be one of {', '.join(ATTENTION_IMPLS)}, got {impl!r}")
    return impl


def softmax_attention(q, k):
    """Explicit attention weights softmax(q k^T) without scaling: (N, Nq, d), (N, Nk, d) -> (N, Nq, Nk)."""
    return torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)


def attend(q, k, v, impl='sdpa'):
    """softmax(q k^T) v for q (N, Nq, d), k (N, Nk, d), v (N, Nk, dv) -> (N, Nq, dv)."""
    if impl == 'sdpa':
        # one head: (N, 1, L, d); scale=1 keeps the paper's unscaled logits. The fused kernels need unit
        # stride in the last dim; given transposed views SDPA silently falls back to the math path,
        # which stores the whole (Nq, Nk) matrix
        q, k, v = (t.contiguous().unsqueeze(1) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, scale=1.0).squeeze(1)
    if impl == 'explicit':
        return torch.bmm(softmax_attention(q, k), v)
    check_attention(impl)


def _conv(cin, cout):
    return nn.Conv3d(cin, cout, kernel_size=1)


def _tokens(t):
    """(N, d, T, H, W) -> (N, T*H*W, d), positions in frame-major order."""
    return t.flatten(2).transpose(1, 2)


class _OutputProjection(nn.Sequential):
    """W: 1x1x1 conv back to C channels then BatchNorm3d initialised to zero (identity block at start)."""

    def __init__(self, inter, channels):
        super().__init__(_conv(inter, channels), nn.BatchNorm3d(channels))
        nn.init.zeros_(self[1].weight)
        nn.init.zeros_(self[1].bias)


class NonLocalBlock(nn.Module):
    """Non-local block over all T*H*W positions of a frame group (Wang et al., embedded Gaussian).

    subsample=True max-pools phi and g by (1, 2, 2): NVAN uses it for the blocks in layer1.
    Parameter names (g, W.0, W.1, theta, phi; g.0 / phi.0 when subsampled) are those of the
    original release.
    """

    def __init__(self, channels, subsample=False, attention='sdpa'):
        super().__init__()
        self.channels = channels
        self.inter_channels = channels // 2
        self.subsample = subsample
        self.attention = check_attention(attention)
        # registration order g, W, theta, phi gives the original's state_dict order
        self.g = _conv(channels, self.inter_channels)
        self.W = _OutputProjection(self.inter_channels, channels)
        self.theta = _conv(channels, self.inter_channels)
        self.phi = _conv(channels, self.inter_channels)
        if subsample:
            self.g = nn.Sequential(self.g, nn.MaxPool3d(kernel_size=(1, 2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool3d(kernel_size=(1, 2, 2)))

    def _query_key_value(self, x):
        return _tokens(self.theta(x)), _tokens(self.phi(x)), _tokens(self.g(x))

    def forward(self, x):
        n, c, t, h, w = x.shape
        q, k, v = self._query_key_value(x)                 # (N, THW, C/2), (N, Nk, C/2) x2
        y = attend(q, k, v, self.attention)                # (N, THW, C/2)
        y = y.transpose(1, 2).reshape(n, self.inter_channels, t, h, w)
        return x + self.W(y)

    @torch.no_grad()
    def attention_weights(self, x):
        """Softmax weights (N, T*H*W, Nk) for input x (N, C, T, H, W); Nk = T*H*W, or T*(H//2)*(W//2)
        when subsampled. Rows index queries, columns keys, both frame-major (t, h, w)."""
        q, k, _ = self._query_key_value(x)
        return softmax_attention(q, k)

    def extra_repr(self):
        return f'channels={self.channels}, subsample={self.subsample}, attention={self.attention!r}'


class StripeNonLocalBlock(nn.Module):
    """Non-local block over horizontal stripes (STE-NVAN's spatial reduction).

    Each frame's map is average pooled into `stripes` horizontal stripes; attention runs over the
    T*stripes stripe vectors, and each stripe's output (after W) is added to every position of
    that stripe. H must be divisible by `stripes`.
    """

    def __init__(self, channels, stripes, attention='sdpa'):
        super().__init__()
        self.channels = channels
        self.inter_channels = channels // 2
        self.stripes = stripes
        self.attention = check_attention(attention)
        # registration order g, theta, phi, W gives the original's state_dict order
        self.g = _conv(channels, self.inter_channels)
        self.theta = _conv(channels, self.inter_channels)
        self.phi = _conv(channels, self.inter_channels)
        self.W = _OutputProjection(self.inter_channels, channels)

    def _pool(self, x):
        n, c, t, h, w = x.shape
        if h % self.stripes:
            raise ModelConfigError(
                f'stripe non-local block: feature height {h} is not divisible by stripes={self.stripes}; '
                f'choose --stripes dividing the feature heights (input height /4, /8, /16, /16) or another --height')
        # mean over the (H/stripes) x W positions of each stripe -> (N, C, T, stripes, 1)
        return x.reshape(n, c, t, self.stripes, (h // self.stripes) * w).mean(-1, keepdim=True)

    def _query_key_value(self, s):
        return _tokens(self.theta(s)), _tokens(self.phi(s)), _tokens(self.g(s))

    def forward(self, x):
        n, c, t, h, w = x.shape
        s = self._pool(x)                                   # (N, C, T, stripes, 1)
        q, k, v = self._query_key_value(s)                  # (N, T*stripes, C/2)
        y = attend(q, k, v, self.attention)
        y = y.transpose(1, 2).reshape(n, self.inter_channels, t, self.stripes, 1)
        wy = self.W(y)                                      # (N, C, T, stripes, 1)
        # broadcast each stripe's output over its rows and columns
        z = x.reshape(n, c, t, self.stripes, h // self.stripes, w) + wy.unsqueeze(-1)
        return z.reshape(n, c, t, h, w)

    @torch.no_grad()
    def attention_weights(self, x):
        """Softmax weights (N, T*stripes, T*stripes) for input x (N, C, T, H, W); rows are queries,
        columns keys, both ordered t * stripes + s (stripe 0 at the top of the frame)."""
        q, k, _ = self._query_key_value(self._pool(x))
        return softmax_attention(q, k)

    def extra_repr(self):
        return f'channels={self.channels}, stripes={self.stripes}, attention={self.attention!r}'
