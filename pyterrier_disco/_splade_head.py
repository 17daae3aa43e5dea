"""The SPLADE activation without the (batch x tokens x vocabulary) logits.

SPLADE wants, for each text and vocabulary term ``j``, ``max_t log(1 + relu(x_t . w_j + b_j))`` where ``x_t``
is the input of the masked-LM output layer at token ``t``. ``log1p(relu(.))`` is monotone, so this is
``log1p(relu(max_t logit))``, and only the terms whose largest logit is positive (a few hundred of 30k) are
non-zero. :class:`SpladeHead` finds those terms and their arg-max token without gradients, one text at a
time, then recomputes exactly those logits with gradients. The values and gradients are those of the plain
formula (the gradient of a max flows to its arg-max), at a fraction of the time and memory.

On a CPU with native bf16 the search first screens the vocabulary with a bf16 product (about 3x faster
than fp32 here) and keeps every term whose logit *could* be positive given a bound on the bf16 rounding
error; only those candidates get exact fp32 logits, so the result is still the fp32 one.
"""
import contextlib
from typing import Optional, Sequence, Tuple

import torch

# Rounding x and w to bf16 (2^-8 relative each) and the bf16 product (2^-8) stay below 3 * 2^-8 * |x|.|w|
# <= 3 * 2^-8 * ||x|| ||w|| (fp32 accumulation adds ~2^-17); 2^-6 leaves a margin.
BF16_ERROR = 2.0 ** -6
# fp32 search: logits of this many vocabulary rows at a time, as (rows, tokens), reduced along the contiguous
# tokens axis while they are in cache (about 2x faster than one (tokens, vocab) product reduced across rows)
SEARCH_ROWS = 2048


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class SpladeHead:
    """Sparse SPLADE activations computed from the input of a masked LM's output layer (``nn.Linear``)."""

    def __init__(self, decoder: torch.nn.Linear, screen: Optional[bool] = None):
        self.decoder = decoder
        self.screen = screen

    @classmethod
    def of(cls, mlm: torch.nn.Module, check_inputs: dict) -> Optional["SpladeHead"]:
        """The head of ``mlm`` if its logits are exactly ``Linear(x)`` of a captured ``x``, else None.

        Checked on ``check_inputs`` (a tokenised text), so a model that post-processes its logits
        (soft-capping, scaling) falls back to the plain formula instead of giving wrong vectors.
        """
        decoder = mlm.get_output_embeddings()
        if not isinstance(decoder, torch.nn.Linear):
            return None
        head = cls(decoder)
        with torch.no_grad():
            logits = mlm(**check_inputs).logits.float()
            with head.capture():
                x = mlm(**check_inputs).logits.float()
            if x.shape[-1] != decoder.in_features:
                return None
            rebuilt = torch.nn.functional.linear(x, decoder.weight.float(), _bias(decoder))
        return head if torch.allclose(rebuilt, logits, atol=1e-4, rtol=1e-4) else None

    @contextlib.contextmanager
    def capture(self):
        """While active, the model's ``.logits`` are the output layer's *input* (batch, tokens, hidden)."""
        self.decoder.forward = _identity  # an instance attribute shadows nn.Linear.forward
        try:
            yield
        finally:
            del self.decoder.forward

    def representations(self, x: torch.Tensor, attention_mask: torch.Tensor,
                        blank: Sequence[bool] = ()) -> torch.Tensor:
        """(batch, vocab) SPLADE vectors from captured inputs ``x``; rows flagged in ``blank`` are zero."""
        weight, bias = self.decoder.weight, _bias(self.decoder)
        rows, terms, tokens = self.active_terms(x.detach(), attention_mask)
        keep = ~torch.as_tensor(list(blank) or [False] * len(x), dtype=torch.bool, device=rows.device)[rows]
        rows, terms, tokens = rows[keep], terms[keep], tokens[keep]
        # index_select (not x[rows, tokens]): its backward, index_add, sums duplicates in a fixed order
        picked = torch.index_select(x.reshape(-1, x.shape[-1]), 0, rows * x.shape[1] + tokens).float()
        logits = (picked * torch.index_select(weight, 0, terms).float()).sum(-1) + torch.index_select(bias, 0, terms)
        reps = torch.zeros(x.shape[0], weight.shape[0], device=x.device, dtype=torch.float32)
        return reps.index_put((rows, terms), torch.log1p(torch.relu(logits)))

    @torch.no_grad()
    def active_terms(self, x: torch.Tensor, attention_mask: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row, term, arg-max token) of every term whose largest logit over a text's tokens is positive."""
        weight, bias = self.decoder.weight.detach().float(), _bias(self.decoder).detach()
        screen = (x.device.type == "cpu" and cpu_has_bf16()) if self.screen is None else self.screen
        if screen:
            weight_bf16 = weight.to(torch.bfloat16)
            slack = BF16_ERROR * weight.norm(dim=1)
        rows, terms, tokens = [], [], []
        for i in range(x.shape[0]):
            positions = torch.nonzero(attention_mask[i]).squeeze(1)
            xi = x[i, positions].float()
            if len(positions) == 0:
                continue
            if screen:
                # (vocab, tokens): reducing along the contiguous dimension is ~2x faster on CPU
                rough = (weight_bf16 @ xi.to(torch.bfloat16).T).amax(1).float()
                candidates = torch.nonzero(rough + bias + slack * xi.norm(dim=1).max() > 0).squeeze(1)
                peak, arg = torch.addmm(bias[candidates], xi, weight[candidates].T).max(0)
            else:
                candidates = None
                peak, arg = _fp32_peaks(weight, bias, xi)
            active = torch.nonzero(peak > 0).squeeze(1)
            rows.append(torch.full_like(active, i))
            terms.append(active if candidates is None else candidates[active])
            tokens.append(positions[arg[active]])
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return tuple(torch.cat(parts) if parts else empty for parts in (rows, terms, tokens))


def _fp32_peaks(weight: torch.Tensor, bias: torch.Tensor, xi: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per vocabulary term, the largest fp32 logit over the text's tokens ``xi`` and its token."""
    xt = xi.T.contiguous()
    parts = [torch.addmm(bias[lo:lo + SEARCH_ROWS, None], weight[lo:lo + SEARCH_ROWS], xt).max(1)
             for lo in range(0, weight.shape[0], SEARCH_ROWS)]
    return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


def _identity(x):
    return x


def _bias(decoder: torch.nn.Linear) -> torch.Tensor:
    if decoder.bias is None:
        return torch.zeros(decoder.out_features, device=decoder.weight.device)
    return decoder.bias.float()
