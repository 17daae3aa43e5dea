"""The SPLADE activation without the (batch x tokens x vocabulary) logits.

SPLADE wants, for each text and vocabulary term ``j``, ``max_t log(1 + relu(x_t . w_j + b_j))`` where ``x_t``
is the input of the masked-LM output layer at token ``t``. ``log1p(relu(.))`` is monotone, so this is
``log1p(relu(max_t logit))``, and only the terms whose largest logit is positive (a few hundred of 30k) are
non-zero. :class:`SpladeHead` finds those terms and their arg-max token without gradients (in fp32, several
texts per pass over the vocabulary: :func:`_fp32_search`), then recomputes exactly those logits with
gradients. The values and gradients are those of the plain formula (the gradient of a max flows to its
arg-max), at a fraction of the time and memory.

On a CPU with native bf16 the search first screens the vocabulary with a bf16 product (about 3x faster
than fp32 here) and keeps every term whose logit *could* be positive given a bound on the bf16 rounding
error; only those candidates get exact fp32 logits, so the result is still the fp32 one.
"""
import contextlib
import functools
from typing import List, Optional, Sequence, Tuple

import torch

from ._utils import cpu_caches

# Rounding x and w to bf16 (2^-8 relative each) and the bf16 product (2^-8) stay below 3 * 2^-8 * |x|.|w|
# <= 3 * 2^-8 * ||x|| ||w|| (fp32 accumulation adds ~2^-17); 2^-6 leaves a margin.
BF16_ERROR = 2.0 ** -6
# fp32 search: the tokens of several texts (about this many in all) share each pass over the vocabulary, so
# the (vocab x hidden) weights stream from memory once per group rather than once per text (3.5x faster for
# 15-token queries, measured on a 2-core AMD EPYC Zen 3)
GROUP_TOKENS = 512
# ... and each text is padded to a multiple of this many tokens: products whose width is a multiple of 16 ran
# 1.3-1.7x faster than their odd neighbours there (15 tokens: 5.8 ms, 16: 3.6 ms for the whole vocabulary)
ALIGN = 16


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
        texts = [(i, torch.nonzero(attention_mask[i]).squeeze(1)) for i in range(x.shape[0])]
        texts = [(i, positions, x[i, positions].float()) for i, positions in texts if len(positions)]
        inputs = [xi for _, _, xi in texts]
        found = _bf16_screened_search(weight, bias, inputs) if screen else _fp32_search(weight, bias, inputs)
        rows, terms, tokens = [], [], []
        for (i, positions, _), (active, arg) in zip(texts, found):
            rows.append(torch.full_like(active, i))
            terms.append(active)
            tokens.append(positions[arg])
        empty = torch.zeros(0, dtype=torch.long, device=x.device)
        return tuple(torch.cat(parts) if parts else empty for parts in (rows, terms, tokens))


def _bf16_screened_search(weight: torch.Tensor, bias: torch.Tensor, texts: List[torch.Tensor]
                          ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`_fp32_search`'s result, one text at a time: a bf16 product keeps every term whose logit could be
    positive given the rounding bound, and only those get exact fp32 logits."""
    weight_bf16 = weight.to(torch.bfloat16)
    slack = BF16_ERROR * weight.norm(dim=1)
    out = []
    for xi in texts:
        # (vocab, tokens): reducing along the contiguous dimension is ~2x faster on CPU
        rough = (weight_bf16 @ xi.to(torch.bfloat16).T).amax(1).float()
        candidates = torch.nonzero(rough + bias + slack * xi.norm(dim=1).max() > 0).squeeze(1)
        peak, arg = torch.addmm(bias[candidates], xi, weight[candidates].T).max(0)
        active = torch.nonzero(peak > 0).squeeze(1)
        out.append((candidates[active], arg[active]))
    return out


def _fp32_search(weight: torch.Tensor, bias: torch.Tensor, texts: List[torch.Tensor]
                 ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Per text (its tokens' ``(tokens, hidden)`` inputs): the terms whose largest fp32 logit is positive, and
    for each the token (an index into the text) that gives it.

    Texts are grouped (longest first) and each one padded to its group's length (a multiple of ``ALIGN``) with
    copies of its first token, which leaves every maximum unchanged; a block of vocabulary rows at a time, the
    group's logits are reduced to per-text maxima while in cache (``amax``: no indices, ~1.9x faster than
    ``max``). The arg-max token is then found for the few positive terms only.
    """
    vocab, hidden = weight.shape
    out: List[Tuple[torch.Tensor, torch.Tensor]] = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    while order:
        length = -(-len(texts[order[0]]) // ALIGN) * ALIGN
        size = max(1, GROUP_TOKENS // length)
        group, order = order[:size], order[size:]
        columns = torch.stack([torch.cat([texts[i], texts[i][:1].expand(length - len(texts[i]), -1)])
                               for i in group]).reshape(-1, hidden).T.contiguous()
        block = max(64, _block_bytes() // (4 * columns.shape[1]))
        logits = torch.empty(min(block, vocab), columns.shape[1], device=weight.device)
        peaks = torch.empty(vocab, len(group), device=weight.device)
        for lo in range(0, vocab, block):
            part = logits[:min(block, vocab - lo)]
            torch.addmm(bias[lo:lo + len(part), None], weight[lo:lo + len(part)], columns, out=part)
            torch.amax(part.view(len(part), len(group), length), dim=2, out=peaks[lo:lo + len(part)])
        for j, i in enumerate(group):
            active = torch.nonzero(peaks[:, j] > 0).squeeze(1)
            arg = torch.addmm(bias[active], texts[i], weight[active].T).argmax(0)
            out[i] = (active, arg)
    return out


@functools.lru_cache(maxsize=1)
def _block_bytes() -> int:
    """Bytes of logits per block of the fp32 search: 4x the per-core L2 cache (2 MiB on a 512 KiB L2, where
    1-4 MiB measured within 10% of each other), 2 MiB where the OS does not say."""
    l2 = cpu_caches().get(2)
    return min(max(4 * l2, 1 << 20), 16 << 20) if l2 else 2 << 20


def _identity(x):
    return x


def _bias(decoder: torch.nn.Linear) -> torch.Tensor:
    if decoder.bias is None:
        return torch.zeros(decoder.out_features, device=decoder.weight.device)
    return decoder.bias.float()
