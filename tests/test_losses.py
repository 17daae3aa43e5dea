"""Losses and sparsity regularisation against independent numpy/scipy computations."""
import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr, softmax

from pyterrier_disco.train import (LossConfig, SparsityConfig, flops_regularizer, infonce, kld, kld_infonce, l1, mse,
                                   warmup_lambda)

RNG = np.random.default_rng(1234)


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


def np_kl(p_logits, q_logits, T=1.0):
    """KL(p || q) per row, summed over columns, averaged over rows."""
    p, q = softmax(p_logits / T, axis=1), softmax(q_logits / T, axis=1)
    return rel_entr(p, q).sum(axis=1).mean()


def np_infonce(q, pos, negs, tau):
    all_negs = negs.reshape(-1, negs.shape[2])
    losses = []
    for i in range(q.shape[0]):
        logits = np.concatenate([[q[i] @ pos[i]], all_negs @ q[i]]) / tau
        losses.append(-log_softmax(logits)[0])
    return float(np.mean(losses))


def test_kld_matches_scipy_and_direction():
    student, teacher = RNG.normal(size=(5, 9)) * 3, RNG.normal(size=(5, 9)) * 3
    got = kld(_t(student), _t(teacher)).item()
    assert got == pytest.approx(np_kl(teacher, student), rel=1e-10)
    # the direction is KL(teacher || student), not the reverse, and the two differ on this case
    reverse = np_kl(student, teacher)
    assert abs(np_kl(teacher, student) - reverse) > 1e-3
    assert got != pytest.approx(reverse, rel=1e-6)
    assert kld(_t(teacher), _t(student)).item() == pytest.approx(reverse, rel=1e-10)


def test_kld_temperature_and_zero_when_equal():
    student, teacher = RNG.normal(size=(4, 6)), RNG.normal(size=(4, 6))
    assert kld(_t(student), _t(teacher), temperature=2.5).item() == pytest.approx(np_kl(teacher, student, 2.5))
    # softmax is shift-invariant: a shifted copy has zero divergence
    assert kld(_t(teacher + 7.0), _t(teacher)).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        kld(_t(student), _t(teacher[:, :3]))


def test_infonce_matches_numpy_in_batch():
    B, N, V = 4, 3, 11
    q, pos, negs = RNG.random((B, V)), RNG.random((B, V)), RNG.random((B, N, V))
    for tau in (1.0, 0.05):
        assert infonce(_t(q), _t(pos), _t(negs), tau).item() == pytest.approx(np_infonce(q, pos, negs, tau), rel=1e-9)


def test_kld_infonce_is_weighted_sum():
    B, N, V = 3, 4, 7
    q, docs, teacher = RNG.random((B, V)), RNG.random((B, 1 + N, V)), RNG.normal(size=(B, 1 + N))
    student = np.einsum("bv,bcv->bc", q, docs)
    for preset, w, tau in (("disco", 0.01, 1.0), ("followup", 0.05, 0.08)):
        expected = (1 - w) * np_kl(teacher, student) + w * np_infonce(q, docs[:, 0], docs[:, 1:], tau)
        assert kld_infonce(_t(q), _t(docs), _t(teacher), weight=w, tau=tau).item() == pytest.approx(expected)
        terms = LossConfig.preset(preset).compute(_t(q), _t(docs), teacher_scores=_t(teacher))
        assert terms["loss"].item() == pytest.approx(expected)
        assert terms["kld"].item() == pytest.approx(np_kl(teacher, student))


def test_soft_positives_enter_the_kld_but_not_the_infonce_negatives():
    """n_positives P: the KLD covers all P + N candidates with their own teacher scores; InfoNCE's positive is
    column 0 and its in-batch negatives are the columns from P on (soft positives are not negatives)."""
    B, P, N, V = 3, 3, 4, 7
    q, docs, teacher = RNG.random((B, V)), RNG.random((B, P + N, V)), RNG.normal(size=(B, P + N))
    student = np.einsum("bv,bcv->bc", q, docs)
    w, tau = 0.2, 0.08
    expected = (1 - w) * np_kl(teacher, student) + w * np_infonce(q, docs[:, 0], docs[:, P:], tau)
    got = kld_infonce(_t(q), _t(docs), _t(teacher), weight=w, tau=tau, n_positives=P).item()
    assert got == pytest.approx(expected)
    assert got != pytest.approx(kld_infonce(_t(q), _t(docs), _t(teacher), weight=w, tau=tau).item())
    config = LossConfig.preset("followup", weight=w)
    assert config.compute(_t(q), _t(docs), _t(teacher), n_positives=P)["loss"].item() == pytest.approx(expected)
    alone = LossConfig.preset("infonce", tau=tau).compute(_t(q), _t(docs), n_positives=P)["loss"].item()
    assert alone == pytest.approx(np_infonce(q, docs[:, 0], docs[:, P:], tau))
    with pytest.raises(ValueError, match="n_positives"):
        kld_infonce(_t(q), _t(docs), _t(teacher), n_positives=P + N)


def test_mse_and_config_errors():
    a, b = RNG.normal(size=(3, 20)), RNG.normal(size=(3, 20))
    assert mse(_t(a), _t(b)).item() == pytest.approx(float(np.mean((a - b) ** 2)))
    mse_loss = LossConfig.preset("mse").compute(_t(a), teacher_q=_t(b))["loss"].item()
    assert mse_loss == pytest.approx(np.mean((a - b) ** 2))
    with pytest.raises(ValueError, match="unknown loss"):
        LossConfig("margin")
    with pytest.raises(ValueError, match="teacher_scores"):
        LossConfig.preset("kld").compute(_t(a), _t(RNG.random((3, 2, 20))))
    with pytest.raises(ValueError, match="preset"):
        LossConfig.preset("nope")


def test_kld_infonce_gradient_matches_finite_difference():
    q = torch.tensor(RNG.random((2, 5)), requires_grad=True)
    docs = torch.tensor(RNG.random((2, 3, 5)))
    teacher = torch.tensor(RNG.normal(size=(2, 3)))
    kld_infonce(q, docs, teacher, weight=0.3, tau=0.5).backward()
    eps = 1e-6
    base = kld_infonce(q.detach(), docs, teacher, weight=0.3, tau=0.5).item()
    for i, j in [(0, 0), (1, 4)]:
        q2 = q.detach().clone()
        q2[i, j] += eps
        fd = (kld_infonce(q2, docs, teacher, weight=0.3, tau=0.5).item() - base) / eps
        assert q.grad[i, j].item() == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_flops_l1_match_numpy():
    reps = RNG.random((6, 30)) * (RNG.random((6, 30)) > 0.7)
    assert flops_regularizer(_t(reps)).item() == pytest.approx(float(np.sum(np.mean(np.abs(reps), axis=0) ** 2)))
    assert l1(_t(reps)).item() == pytest.approx(float(np.mean(np.sum(np.abs(reps), axis=1))))


@pytest.mark.parametrize("lam,T", [(1e-3, 0), (5e-2, 9), (0.1, 100)])
def test_warmup_schedule(lam, T):
    for step in range(0, 3 * T + 3):
        expected = lam * min(1.0, (step / (T + 1)) ** 2)
        assert warmup_lambda(lam, step, T) == pytest.approx(expected)
    if T:
        assert warmup_lambda(lam, T // 2, T) < lam
    assert warmup_lambda(lam, T + 1, T) == pytest.approx(lam)


def test_sparsity_presets_and_compute():
    assert (SparsityConfig.preset("off").lambda_d, SparsityConfig.preset("off").lambda_q) == (0.0, 0.0)
    paper = SparsityConfig.preset("paper")  # DiSCo Section 4.3: lambda_q 1e-3, lambda_d 5e-4
    assert (paper.lambda_q, paper.lambda_d) == (1e-3, 5e-4)
    with pytest.raises(ValueError, match="warm-up"):
        SparsityConfig(warmup_q=-1)
    cfg = SparsityConfig.preset("followup-high", warmup_q=3)
    assert (cfg.lambda_d, cfg.lambda_q) == (1e-3, 5e-3)
    q = RNG.random((4, 25))
    docs = RNG.random((4, 3, 25))
    out = cfg.compute(_t(q), _t(docs), step=2)
    lam_q = 5e-3 * (2 / 4) ** 2
    d2 = docs.reshape(-1, 25)
    expected = (1e-3 * np.sum(np.mean(d2, axis=0) ** 2) + lam_q * np.mean(q.sum(axis=1))
                + 1 / q.sum() ** 2 + 1 / d2.sum() ** 2)
    assert out["loss"].item() == pytest.approx(expected)
    assert out["lambda_q"].item() == pytest.approx(lam_q)


def test_anti_zero_guards_the_students_own_part_and_a_zero_sum_adds_nothing():
    """With a fixed vector added to the student's (the utterance's), the anti-zero term is on the student's part:
    the sum with the fixed vector never nears zero and would hide a collapse."""
    own = torch.tensor(RNG.random((3, 10)) * (RNG.random((3, 10)) > 0.5), requires_grad=True)
    fixed = torch.tensor(RNG.random((3, 10)) * 5)
    docs = torch.tensor(RNG.random((3, 2, 10)))
    out = SparsityConfig.preset("off").compute(own + fixed, docs, step=1, own=own)
    d_sum = docs.sum().item()
    assert out["anti_zero"].item() == pytest.approx(1 / own.sum().item() ** 2 + 1 / d_sum ** 2)
    out["loss"].backward()
    assert torch.allclose(own.grad, torch.full_like(own.grad, -2 / own.detach().sum().item() ** 3))
    without = SparsityConfig.preset("off").compute(own + fixed, docs, step=1)
    assert without["anti_zero"].item() == pytest.approx(1 / (own + fixed).sum().item() ** 2 + 1 / d_sum ** 2)
    dead = torch.zeros(3, 10, requires_grad=True)
    out = SparsityConfig.preset("off").compute(torch.relu(dead - 1) + fixed, docs, step=1, own=torch.relu(dead - 1))
    assert out["anti_zero"].item() == pytest.approx(1 / d_sum ** 2)  # not inf: a dead student has no gradient
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and torch.equal(dead.grad, torch.zeros_like(dead))


def test_document_terms_from_a_sparse_matrix_equal_the_dense_ones():
    import scipy.sparse as sp

    from pyterrier_disco.train.regularization import document_terms

    q = RNG.random((4, 40))
    docs = RNG.random((12, 40)) * (RNG.random((12, 40)) > 0.8)
    dense = SparsityConfig.preset("followup-readme-higher").compute(_t(q), _t(docs), step=3)
    sparse = SparsityConfig.preset("followup-readme-higher").compute(_t(q), sp.csr_matrix(docs), step=3)
    for key in ("loss", "flops_d", "anti_zero", "L0_d"):
        assert sparse[key].item() == pytest.approx(dense[key].item(), rel=1e-6), key
    assert document_terms(sp.csr_matrix(docs))[2].item() == pytest.approx((docs > 0).sum(axis=1).mean())


def test_frozen_documents_get_no_gradient_from_flops():
    """In DiSCo the document encoder is frozen: the FLOPS term is logged but only queries are trained."""
    q = torch.tensor(RNG.random((3, 10)), requires_grad=True)
    docs = torch.tensor(RNG.random((3, 2, 10)))  # cached, frozen document vectors
    out = SparsityConfig.preset("paper").compute(q, docs, step=1)
    out["loss"].backward()
    # L1 gradient on q is lambda_q / B per entry, minus the anti-zero term's 2 / sum(q)^3
    expected = 1e-3 / 3 - 2 / q.detach().sum() ** 3
    assert torch.allclose(q.grad, torch.full_like(q.grad, expected.item()))
    assert out["flops_d"].item() > 0


def test_train_command_line_reaches_the_warmup_lambdas_and_positives():
    from pyterrier_disco.cli import _config_from_args, build_parser
    from pyterrier_disco.train import TrainConfig

    args = build_parser().parse_args(["train", "--dataset", "d", "--teacher-run", "r.parquet", "--out", "o",
                                      "--regularization", "paper", "--sparsity-warmup-steps", "7",
                                      "--lambda-q", "2e-3", "--positives", "4"])
    config = _config_from_args(args, TrainConfig)
    assert config.sparsity_config() == SparsityConfig(lambda_d=5e-4, lambda_q=2e-3, warmup_d=7, warmup_q=7)
    assert config.sparsity_config().lambdas(4)["lambda_q"] == pytest.approx(2e-3 * (4 / 8) ** 2)
    assert config.n_positives == 4
    assert TrainConfig().sparsity_config() == SparsityConfig()  # the release's default: no regularisation
