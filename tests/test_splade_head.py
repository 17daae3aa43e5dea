"""The sparse SPLADE head against the plain (batch x tokens x vocab) formula: values and gradients."""
import pytest
import torch

from pyterrier_disco import _splade_head
from pyterrier_disco._splade_head import SpladeHead, cpu_has_bf16


def _texts(ikat_passages):
    passages = list(ikat_passages["text"][:10])
    return passages + ["", "   ", "what about its habitat?", "a b c"]


def _grads(model, reps_fn, weights):
    model.mlm.zero_grad()
    (reps_fn() * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.mlm.named_parameters() if p.grad is not None}
    model.mlm.zero_grad()
    return grads


@pytest.mark.parametrize("screen", [False, pytest.param(True, marks=pytest.mark.skipif(
    not cpu_has_bf16(), reason="this CPU has no native bf16"))])
def test_sparse_head_gives_the_plain_values_and_gradients(splade_model, ikat_passages, screen):
    texts = _texts(ikat_passages)
    enc = splade_model.tokenize(texts)
    blank = [not t.strip() for t in texts]
    head = SpladeHead(splade_model.mlm.get_output_embeddings(), screen=screen)

    def sparse():
        with head.capture():
            hidden = splade_model.mlm(**enc).logits
        return head.representations(hidden, enc["attention_mask"], blank)

    plain = splade_model.plain_forward(enc, blank)
    reps = sparse()
    assert reps.shape == plain.shape == (len(texts), len(splade_model.vocab))
    assert torch.equal(reps > 0, plain > 0)
    assert (reps - plain).abs().max().item() <= 1e-5
    assert reps[len(texts) - 4:len(texts) - 2].abs().sum() == 0  # blank texts

    weights = torch.rand(plain.shape, generator=torch.Generator().manual_seed(0))
    expected = _grads(splade_model, lambda: splade_model.plain_forward(enc, blank), weights)
    got = _grads(splade_model, sparse, weights)
    assert expected.keys() == got.keys()
    for name, g in expected.items():
        if name.endswith("attention.self.key.bias"):  # mathematically zero (softmax shift-invariance): noise only
            continue
        torch.testing.assert_close(got[name], g, atol=1e-5 * max(1.0, g.abs().max().item()), rtol=1e-3)


def test_sparse_head_is_deterministic(splade_model, ikat_passages):
    texts = _texts(ikat_passages)
    weights = torch.rand(len(texts), len(splade_model.vocab), generator=torch.Generator().manual_seed(1))
    first = _grads(splade_model, lambda: splade_model(texts), weights)
    second = _grads(splade_model, lambda: splade_model(texts), weights)
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_models_whose_logits_are_not_a_plain_linear_layer_use_the_plain_formula(splade_model):
    class Scaled(torch.nn.Module):  # a masked LM that post-processes its logits
        def __init__(self, mlm):
            super().__init__()
            self.mlm = mlm

        def get_output_embeddings(self):
            return self.mlm.get_output_embeddings()

        def forward(self, **kw):
            out = self.mlm(**kw)
            out.logits = out.logits * 0.5
            return out

    enc = splade_model.tokenize(["a check"])
    assert SpladeHead.of(splade_model.mlm, enc) is not None
    assert SpladeHead.of(Scaled(splade_model.mlm), enc) is None
    assert splade_model.mlm.get_output_embeddings().forward.__func__ is torch.nn.Linear.forward  # restored


@pytest.mark.parametrize("group_tokens,block_bytes", [(512, 2 << 20), (40, 64 * 1024), (1, 4 * 64 * 7)])
def test_fp32_search_finds_every_positive_term_and_its_argmax_token(monkeypatch, group_tokens, block_bytes):
    """Texts of very different lengths share groups (padded with copies of their first token) and vocabulary
    blocks (the last one partial): each text's terms and arg-max tokens must be those of its own logits."""
    monkeypatch.setattr(_splade_head, "GROUP_TOKENS", group_tokens)
    monkeypatch.setattr(_splade_head, "_block_bytes", lambda: block_bytes)
    g = torch.Generator().manual_seed(3)
    vocab, hidden = 1000, 16
    weight, bias = torch.randn(vocab, hidden, generator=g), torch.randn(vocab, generator=g) - 9
    texts = [torch.randn(n, hidden, generator=g) for n in (1, 37, 2, 300, 5, 5, 64)]
    found = _splade_head._fp32_search(weight, bias, texts)
    assert len(found) == len(texts)
    for x, (terms, arg) in zip(texts, found):
        logits = x @ weight.T + bias  # (tokens, vocab), brute force
        expected = torch.nonzero(logits.max(0).values > 0).squeeze(1)
        assert 0 < len(expected) < vocab
        assert torch.equal(terms, expected)
        assert arg.max() < len(x)
        torch.testing.assert_close(logits[arg, terms], logits[:, terms].max(0).values, rtol=0, atol=1e-5)
