"""Flatness of the test loss on a fixed subset (`measure.flatness`).

All measures use the model in eval mode (BN with its running statistics), the mean
cross-entropy over the subset, and every parameter:

- top-k Hessian eigenvalues: scipy's ARPACK Lanczos (`eigsh`) on Hessian-vector
  products from torch.func (forward-over-reverse), in float64 on the host side;
- Tr(H): Hutchinson's estimate, the mean of v'Hv over Rademacher probes v;
- Tr(C): trace of the per-sample gradient covariance, from per-sample gradients by
  `torch.func.vmap` (not a batch-size-1 loop): mean |g_i|^2 - |mean g_i|^2;
- the TIC proxy Tr(C) / Tr(H);
- epsilon-sharpness: along each top eigenvector u, the smallest |eps| (either sign) at
  which L(theta + eps u) - L(theta) reaches `loss_increase`, by doubling then bisection.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vmap

from gstc.plan import FlatnessSpec

EPS_START, EPS_MAX, BISECTIONS = 1e-3, 1e3, 40  # parameter-space units along a unit eigenvector


class _Loss:
    """The subset's loss as a function of a flat parameter vector."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
        self.model, self.x, self.y = model, x, y
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.sizes = [p.numel() for _, p in model.named_parameters()]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
        self.buffers = {n: b for n, b in model.named_buffers()}

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, vec.split(self.sizes), self.shapes)}

    def __call__(self, vec: torch.Tensor, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        x = self.x if x is None else x
        y = self.y if y is None else y
        out = functional_call(self.model, (self.unflatten(vec), self.buffers), (x,))
        return F.cross_entropy(out, y)

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        return jvp(grad(self), (self.theta,), (v,))[1]


def hessian_top(loss: _Loss, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k eigenvalues (descending) and unit eigenvectors (columns) of the Hessian."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    n, dev, dtype = loss.theta.numel(), loss.theta.device, loss.theta.dtype
    op = LinearOperator((n, n), dtype=np.float64,
                        matvec=lambda v: loss.hvp(torch.as_tensor(np.ravel(v), device=dev, dtype=dtype)).double().cpu().numpy())
    v0 = np.random.default_rng(seed).standard_normal(n)
    if k >= n:  # tiny models (tests): the dense eigendecomposition is exact
        dense = np.stack([op.matvec(e) for e in np.eye(n)], axis=1)
        vals, vecs = np.linalg.eigh((dense + dense.T) / 2)
    else:
        vals, vecs = eigsh(op, k=k, which="LA", v0=v0, tol=1e-6)
    order = np.argsort(vals)[::-1][:k]
    return vals[order], vecs[:, order]


def hutchinson_trace(loss: _Loss, probes: int, seed: int, chunk: int = 64) -> float:
    """Mean of v'Hv over Rademacher probes, `chunk` probes per vmapped Hessian-vector product."""
    g = torch.Generator().manual_seed(seed)
    total, hvps = 0.0, vmap(loss.hvp)
    for start in range(0, probes, chunk):
        v = (torch.randint(0, 2, (min(chunk, probes - start), *loss.theta.shape), generator=g) * 2 - 1).to(loss.theta)
        total += float((v * hvps(v)).sum())
    return total / probes


def gradient_covariance_trace(loss: _Loss, chunk: int = 64) -> float:
    """Tr(C) of per-sample gradients g_i: mean |g_i|^2 - |mean g_i|^2 (population covariance)."""
    per_sample = vmap(grad(lambda th, xi, yi: loss(th, xi.unsqueeze(0), yi.unsqueeze(0))), in_dims=(None, 0, 0))
    n = len(loss.y)
    sq, mean = 0.0, torch.zeros_like(loss.theta, dtype=torch.float64)
    for start in range(0, n, chunk):
        g = per_sample(loss.theta, loss.x[start:start + chunk], loss.y[start:start + chunk]).double()
        sq += float((g * g).sum())
        mean += g.sum(0)
    mean /= n
    return sq / n - float(torch.dot(mean, mean))


def epsilon_sharpness(loss: _Loss, direction: np.ndarray, increase: float) -> float | None:
    """Smallest |eps| with L(theta + eps u) - L(theta) >= increase; None if not reached by EPS_MAX."""
    u = torch.as_tensor(direction, device=loss.theta.device, dtype=loss.theta.dtype)
    base = float(loss(loss.theta))
    rise: Callable[[float], float] = lambda eps: float(loss(loss.theta + eps * u)) - base  # noqa: E731
    best = None
    for sign in (1.0, -1.0):
        lo, hi = 0.0, EPS_START
        while rise(sign * hi) < increase:
            lo, hi = hi, hi * 2
            if hi > EPS_MAX or (best is not None and lo >= best):
                break
        else:
            for _ in range(BISECTIONS):
                mid = (lo + hi) / 2
                lo, hi = (lo, mid) if rise(sign * mid) >= increase else (mid, hi)
            best = hi if best is None else min(best, hi)
    return best


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: FlatnessSpec, seed: int) -> dict[str, Any]:
    """The measurements `measure.flatness` asks for, as a JSON-ready dict."""
    was_training = model.training
    model.eval()
    try:
        loss = _Loss(model, x, y)
        out: dict[str, Any] = {"samples": len(y), "loss": float(loss(loss.theta))}
        vecs = None
        if spec.hessian_top > 0:
            vals, vecs = hessian_top(loss, spec.hessian_top, seed)
            out.update(hessian_top=[float(v) for v in vals], hessian_top_sum=float(vals.sum()))
        if spec.trace_probes > 0:
            out["hessian_trace"] = hutchinson_trace(loss, spec.trace_probes, seed)
        if spec.grad_covariance:
            out["grad_cov_trace"] = gradient_covariance_trace(loss)
        if "grad_cov_trace" in out and out.get("hessian_trace"):
            out["tic"] = out["grad_cov_trace"] / out["hessian_trace"]
        eps = spec.epsilon
        if eps is not None and vecs is not None:
            out["epsilon"] = [epsilon_sharpness(loss, vecs[:, i], eps.loss_increase)
                              for i in range(min(eps.directions, vecs.shape[1]))]
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}
    finally:
        model.train(was_training)
