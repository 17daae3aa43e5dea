"""The sparse SPLADE head against the plain (batch x tokens x vocab) formula: values and gradients."""
import pytest
import torch

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
