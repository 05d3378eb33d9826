"""Flatness measures against brute force on a model small enough for a dense Hessian."""

from __future__ import annotations

import numpy as np
import pytest

from gstc.plan import FlatnessSpec
from gstc.runtime.flatness import _Loss, epsilon_sharpness, gradient_covariance_trace, hessian_top, hutchinson_trace, measure

torch = pytest.importorskip("torch")


@pytest.fixture
def tiny():
    # A conv + BN (eval mode: running statistics) + dense model with 3*2*2*2 + 2 + 2 + 2*4*3 + 3 = 55 parameters.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 2, bias=False), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(2 * 2 * 2, 3)).double()
    model[1].running_mean.uniform_(-0.1, 0.1)
    model[1].running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(16, 3, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, x, y


def dense_hessian(loss: _Loss) -> np.ndarray:
    return torch.autograd.functional.hessian(loss, loss.theta).numpy()


def test_top_eigenvalues_match_the_dense_hessian(tiny):
    loss = _Loss(*tiny)
    want = np.sort(np.linalg.eigvalsh(dense_hessian(loss)))[::-1]
    vals, vecs = hessian_top(loss, 5, seed=0)  # k < n: ARPACK Lanczos on Hessian-vector products
    assert np.allclose(vals, want[:5], rtol=1e-6, atol=1e-9)
    h = dense_hessian(loss)
    for i in range(5):  # and the vectors are unit eigenvectors
        assert np.allclose(h @ vecs[:, i], vals[i] * vecs[:, i], atol=1e-6)
        assert abs(np.linalg.norm(vecs[:, i]) - 1) < 1e-8


def test_hutchinson_trace_converges_to_the_trace(tiny):
    loss = _Loss(*tiny)
    trace = float(np.trace(dense_hessian(loss)))
    # Rademacher probes: variance 2 * sum of squared off-diagonal entries; 4000 probes: within 5%.
    assert hutchinson_trace(loss, 4000, seed=0) == pytest.approx(trace, rel=0.05)


def test_gradient_covariance_trace_matches_explicit_per_sample_gradients(tiny):
    model, x, y = tiny
    loss = _Loss(model, x, y)
    grads = []
    for i in range(len(y)):  # the brute-force reference: one backward pass per sample
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
    g = torch.stack(grads)
    want = float(torch.trace(torch.cov(g.T, correction=0)))
    assert gradient_covariance_trace(loss, chunk=5) == pytest.approx(want, rel=1e-10)


def test_epsilon_is_where_the_loss_rises_by_the_target(tiny):
    loss = _Loss(*tiny)
    vals, vecs = hessian_top(loss, 2, seed=0)
    u = torch.as_tensor(vecs[:, 0])
    eps = epsilon_sharpness(loss, vecs[:, 0], 0.05)
    base = float(loss(loss.theta))
    rises = [float(loss(loss.theta + s * eps * u)) - base for s in (1, -1)]
    assert max(rises) == pytest.approx(0.05, rel=1e-6)  # reached exactly on one side
    for s in (1, -1):  # and not before, on either side
        for frac in (0.25, 0.5, 0.9):
            assert float(loss(loss.theta + s * frac * eps * u)) - base < 0.05
    # A quadratic model's prediction for the top direction: sqrt(2 * 0.05 / lambda_max), roughly.
    assert eps == pytest.approx(np.sqrt(2 * 0.05 / vals[0]), rel=0.5)


def test_measure_returns_every_requested_number(tiny):
    model, x, y = tiny
    spec = FlatnessSpec.model_validate({"hessian_top": 3, "trace_probes": 50, "grad_covariance": True,
                                        "epsilon": {"directions": 2, "loss_increase": 0.05}})
    out = measure(model.train(), x, y, spec, seed=0)
    assert model.training  # restored
    assert len(out["hessian_top"]) == 3 and out["hessian_top_sum"] == pytest.approx(sum(out["hessian_top"]))
    assert out["tic"] == pytest.approx(out["grad_cov_trace"] / out["hessian_trace"])
    assert len(out["epsilon"]) == 2 and out["samples"] == 16
