"""Helland (2020) spec section 6, exact checks 1-6: l_p FGSM, the gradient-penalty identity, Fisher
identities, Hoffman's estimator, the second-order KL, Lemma 3.1; plus power iteration and the proxies."""

import math

import pytest
import torch
import torch.nn.functional as F

from robustlab import models
from robustlab.analysis import gradients as G
from robustlab.errors import InputError


def tiny(seed=0, k=10, side=4, channels=1):
    torch.manual_seed(seed)
    m = models.build("mlp", channels, k, (side, side), hidden=(12,)).double().eval()
    x = torch.rand(6, channels, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return m, x


@pytest.mark.parametrize("p", [2, 3, float("inf"), 1.5])
def test_lp_fgsm_step_norm_value_and_special_cases(p):
    g = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    eps = 0.3
    d = G.lp_fgsm_step(g, p, eps)
    q = G.dual_exponent(p)
    assert torch.allclose(G.lp_norm(d, p), torch.full((5,), eps, dtype=torch.float64), rtol=1e-6)
    val = (d * g).flatten(1).sum(1)
    assert torch.allclose(val, eps * G.lp_norm(g, q), rtol=1e-6)
    if p == float("inf"):
        assert torch.equal(d, eps * g.sign())
    if p == 2:
        assert torch.allclose(d, eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1))


@pytest.mark.parametrize("p", [3, 2, float("inf"), 1])
def test_lp_steepest_ascent_beats_brute_force_on_the_sphere(p):
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(1, 3, dtype=torch.float64, generator=gen)
    u = torch.randn(200000, 3, dtype=torch.float64, generator=gen)
    u = u / G.lp_norm(u, p)[:, None]  # points on the unit l_p sphere
    brute = (u @ g[0]).max()
    best = (G.lp_steepest_ascent(g, p) * g).sum()
    assert best >= brute - 1e-12  # nothing on the sphere does better
    assert brute >= best - 2e-2 * best.abs()  # and the brute force gets close to it


def test_lp_norm_parsing_and_errors():
    assert G.dual_exponent("linf") == 1 and G.dual_exponent(1) == math.inf and G.dual_exponent("l3") == 1.5
    with pytest.raises(InputError, match=r"l_p needs p"):
        G.dual_exponent(0.5)


def test_gradient_penalty_identity_and_first_order_fgsm():
    m, x = tiny()
    y = torch.arange(6) % 10
    g, ce = G.loss_gradient(m, x, y)
    xg = x.clone().requires_grad_(True)
    fy = F.softmax(m(xg), 1)[torch.arange(6), y]
    gf, = torch.autograd.grad(fy.sum(), xg)
    for q in (1, 2, float("inf")):
        assert torch.allclose(G.lp_norm(g, q), G.lp_norm(gf, q) / fy.detach(), rtol=1e-5)
    eps = 1e-4
    for p in (float("inf"), 2, 3):
        xa = x + G.lp_fgsm_step(g, p, eps)  # no clamp: interior points keep the identity exact
        inc = F.cross_entropy(m(xa), y, reduction="none").detach() - ce
        assert torch.allclose(inc, eps * G.lp_norm(g, G.dual_exponent(p)), rtol=1e-2)
    xa = G.lp_fgsm(m, x, y, p=3, eps=0.5)
    assert xa.min() >= 0 and xa.max() <= 1


def test_fisher_identities_and_vjp_rows():
    m, x = tiny()
    mf, jac, f = G.fisher_factor(m, x)
    fro2 = mf.pow(2).sum((1, 2))
    by_f = (jac.pow(2).sum(2) / f).sum(1)  # sum_k ||grad f_k||^2 / f_k
    tr = torch.diagonal(G.fisher_matrix(m, x), dim1=1, dim2=2).sum(1)
    expect = (f * (jac / f[:, :, None]).pow(2).sum(2)).sum(1)  # E_{k~f} ||grad log f_k||^2
    for other in (by_f, tr, expect):
        assert torch.allclose(fro2, other, rtol=1e-8)
    # the VJP recipe: grad of log_softmax with grad_outputs e_k * sqrt(f) is row k of F_f^{1/2} J
    xg = x.clone().requires_grad_(True)
    logp = F.log_softmax(m(xg), 1)
    for k in range(10):
        v = torch.zeros_like(logp)
        v[:, k] = 1
        row, = torch.autograd.grad(logp, xg, grad_outputs=v * logp.exp().sqrt(), retain_graph=True)
        assert torch.allclose(row.flatten(1), mf[:, k], rtol=1e-10, atol=1e-14)
    # and F_f^{1/2} J is diag(f)^{-1/2} times the probability Jacobian
    assert torch.allclose(mf, jac / f.sqrt()[:, :, None], rtol=1e-10)


def test_hoffman_projection_estimator_within_five_percent():
    m, x = tiny()
    mf, _, _ = G.fisher_factor(m, x[:1])
    v = torch.randn(2000, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = v / v.norm(dim=1, keepdim=True)
    est = (10 * (v @ mf[0]).pow(2).sum(1)).mean()
    exact = mf[0].pow(2).sum()
    assert abs(float(est / exact) - 1) < 0.05


def test_second_order_kl_along_top_eigenvector():
    m, x = tiny()
    lam, vec = G.fisher_lambda_max(m, x, iters=200)
    delta = 1e-3 * vec
    with torch.no_grad():
        p0 = F.log_softmax(m(x), 1)
        p1 = F.log_softmax(m(x + delta), 1)
    kl = (p0.exp() * (p0 - p1)).sum(1)
    quad = 0.5 * torch.einsum("ni,nij,nj->n", delta.flatten(1), G.fisher_matrix(m, x), delta.flatten(1))
    assert torch.allclose(kl / quad, torch.ones(6, dtype=torch.float64), rtol=1e-2)


def test_power_iteration_matches_exact_eigenvalue():
    m, x = tiny(seed=3)
    lam, vec = G.fisher_lambda_max(m, x, iters=300, tol=1e-12, generator=torch.Generator().manual_seed(0))
    exact = torch.linalg.eigvalsh(G.fisher_matrix(m, x))[:, -1]
    assert torch.allclose(lam, exact, rtol=1e-6)
    assert torch.allclose(G.jacobian_norms(m, x)["fisher_lambda_max"], exact, rtol=1e-8)
    assert torch.allclose(G.lp_norm(vec, 2), torch.ones(6, dtype=torch.float64))


def test_lemma31_chain_p2_on_100_inputs_and_the_linf_counterexample():
    m, _ = tiny(seed=2)
    x = torch.rand(100, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    c = G.lemma31_chain(m, x)
    tol = 1e-10
    assert (c["lower"] <= c["lambda_max"] * (1 + tol)).all()
    assert torch.allclose(c["lambda_max"], c["p2_squared"], rtol=1e-8)
    assert (c["p2_squared"] <= c["frobenius_squared"] * (1 + tol)).all()
    assert (c["fisher_fro"] >= c["jacobian_fro"] * (1 - tol)).all()
    d = 16
    a = torch.ones(1, 1, d, dtype=torch.float64)
    assert float(G.induced_norm_inf_to_2(a)) == d and float(a.norm()) == math.sqrt(d)
    # enumeration: between the l2->2 norm and sqrt(d) times it, and the one-row formula on a row
    b = torch.randn(1, 2, 6, dtype=torch.float64)
    s = float(torch.linalg.matrix_norm(b, 2))
    assert s - 1e-12 <= float(G.induced_norm_inf_to_2(b)) <= math.sqrt(6) * s + 1e-12
    row = torch.cat([b[:, :1], torch.zeros_like(b[:, :1])], 1)  # two rows, one zero: same as one row
    assert float(G.induced_norm_inf_to_2(row)) == pytest.approx(float(b[0, 0].abs().sum()))


def test_local_lipschitz_of_a_linear_model_is_its_spectral_norm():
    torch.manual_seed(0)
    w = torch.randn(3, 16, dtype=torch.float64)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3, bias=False).double())
    lin[1].weight.data = w
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64)
    est = G.local_lipschitz(lin, x, radius=0.1, samples=4, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.matrix_norm(w, 2)
    assert torch.allclose(est["jacobian_spectral_max"], s.expand(4))
    assert (est["finite_difference_max"] <= s + 1e-12).all() and (est["finite_difference_max"] > 0).all()


def test_sobel_edges_and_edge_correlation():
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    e = G.sobel_edges(x)
    assert e[0, :, 3:5].min() > 0 and e[0, :, :2].abs().max() == 0 and e[0, :, 6:].abs().max() == 0
    assert float(G.edge_correlation(e[:, None], x)) == pytest.approx(1.0)
    noise = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert abs(float(G.edge_correlation(noise, x))) < 0.5
    assert float(G.image_alignment(x - 0.5, x)) == pytest.approx(1.0)


def test_gradient_map_scaling():
    g = torch.randn(2, 1, 5, 5)
    m1 = G.gradient_map(g)
    assert m1.abs().amax() == pytest.approx(1.0) and torch.equal(m1.sign(), g.sign())
    rgb = torch.randn(2, 3, 5, 5)
    rgb[0, 0, 0, 0] = 100.0  # an outlier is clipped at 3 sigma
    m3 = G.gradient_map(rgb)
    assert m3.min() >= 0 and m3.max() <= 1 and float(m3[0, 0, 0, 0]) == 1.0
    assert float(G.gradient_map(torch.zeros(1, 3, 2, 2)).mean()) == pytest.approx(0.5)
