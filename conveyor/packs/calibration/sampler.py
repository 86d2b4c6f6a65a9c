"""The Bayesian calibration model of vacalibration 2.1, sampled with NUTS (NumPyro on JAX's CPU).

One model covers all cases: a shared CSMF `p ~ Dirichlet(1, …, 1)` over all C causes; per
algorithm k a misclassification matrix M_k that is the identity on the causes left out and a
row-stochastic block on the calibrated ones (S_k); and `a_k ~ Multinomial(M_kᵀ p)` on the full
counts. In `prior` mode every row of M_k's block is the normalised S_k-part of a row drawn from
its path-corrected Dirichlet (as the package's Stan program does, all CxC entries are sampled;
only the S_k block reaches the likelihood); in `fixed` mode the block is given. Masks rather
than shapes carry S_k, so one compiled sampler serves every request with the same number of
algorithms and causes: only the first calibration of its kind in a process pays JAX's compile.

The chain is driven a chunk of iterations at a time, so that a job can stop between chunks
and report progress. Same seed, same inputs, same machine: same draws.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Must be set before JAX initialises: float64 as Stan computes, and the CPU backend only.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_ENABLE_X64", "1")
# Compiled samplers are kept on disk, so a fresh worker process skips most of XLA's compile.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "conveyor" / "jax"))

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import ndtri
from numpyro.diagnostics import effective_sample_size, gelman_rubin
from numpyro.infer import NUTS

jax.config.update("jax_enable_x64", True)

MAX_TREE_DEPTH = 10
TARGET_ACCEPT = 0.9  # the package's adapt_delta
_SIMPLEX = dist.biject_to(dist.constraints.simplex)


@dataclass(frozen=True)
class SamplerSettings:
    """One chain, seed 1 and 10,000 kept draws as the package; 2,000 warm-up iterations
    instead of its 10,000 (NUTS has adapted long before: the draws' distribution is the same,
    and a calibration takes a third of the time)."""

    n_warmup: int = 2_000
    n_samples: int = 10_000
    seed: int = 1
    chunk: int = 500  # iterations per compiled step: the granularity of cancel and progress


@dataclass(frozen=True)
class Diagnostics:
    max_rhat: float
    min_ess_bulk_ratio: float  # smallest bulk ESS of p over the number of draws
    divergences: int
    max_treedepth_hits: int

    def problems(self) -> list[str]:
        found = []
        if not self.max_rhat < 1.05:
            found.append(f"R-hat {self.max_rhat:.3f} ≥ 1.05")
        if not self.min_ess_bulk_ratio > 0.1:
            found.append(f"bulk ESS only {self.min_ess_bulk_ratio:.1%} of the draws")
        if self.divergences:
            found.append(f"{self.divergences} divergent transitions")
        if self.max_treedepth_hits:
            found.append(f"{self.max_treedepth_hits} iterations hit the maximum tree depth")
        return found

    def to_json(self) -> dict[str, float | int]:
        return {
            "max_rhat": self.max_rhat,
            "min_ess_bulk_ratio": self.min_ess_bulk_ratio,
            "divergences": self.divergences,
            "max_treedepth_hits": self.max_treedepth_hits,
        }


def _misclassification(keep: jnp.ndarray, rows: jnp.ndarray) -> jnp.ndarray:
    """M (KxCxC): identity outside S_k, the rows restricted to S_k and re-normalised inside."""
    block = keep[:, :, None] * keep[:, None, :]
    sub = rows * block
    total = sub.sum(-1, keepdims=True)
    sub = sub / jnp.where(total > 0, total, 1.0)
    identity = jnp.eye(keep.shape[-1]) * (1.0 - keep)[:, :, None]
    return sub + identity


def model(counts: jnp.ndarray, keep: jnp.ndarray, matrix: jnp.ndarray, sample_matrix: bool) -> None:
    n_causes = counts.shape[-1]
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(n_causes)))
    rows = numpyro.sample("R", dist.Dirichlet(matrix).to_event(2)) if sample_matrix else matrix
    probs = jnp.einsum("i,kij->kj", p, _misclassification(keep, rows))
    numpyro.factor("likelihood", jnp.sum(counts * jnp.log(jnp.clip(probs, 1e-300))))


@functools.cache
def _kernel(sample_matrix: bool, n_warmup: int, shape: tuple[int, int]) -> tuple[NUTS, Callable[..., Any]]:
    """A NUTS kernel and its jitted chunk runner, kept for the process (JAX compiles once)."""

    def bound(counts: jnp.ndarray, keep: jnp.ndarray, matrix: jnp.ndarray) -> None:
        model(counts, keep, matrix, sample_matrix)

    kernel = NUTS(bound, target_accept_prob=TARGET_ACCEPT, max_tree_depth=MAX_TREE_DEPTH)

    @functools.partial(jax.jit, static_argnums=(2,))
    def run_chunk(state: Any, args: tuple[jnp.ndarray, ...], length: int) -> tuple[Any, Any]:
        def step(s: Any, _: Any) -> tuple[Any, Any]:
            s = kernel.sample(s, args, {})
            return s, (_SIMPLEX(s.z["p"]), s.diverging, s.num_steps)

        return jax.lax.scan(step, state, None, length=length)

    return kernel, run_chunk


def sample(
    counts: np.ndarray,
    keep: np.ndarray,
    matrix: np.ndarray,
    *,
    sample_matrix: bool,
    settings: SamplerSettings,
    on_chunk: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[np.ndarray, Diagnostics]:
    """Posterior draws of p (n_samples x C) and the chain's diagnostics.

    counts: KxC deaths; keep: KxC, 1.0 where cause j is calibrated for algorithm k; matrix:
    KxCxC Dirichlet parameters (sample_matrix) or misclassification rates. `on_chunk(done,
    total)` is called after each chunk of iterations; it may raise to stop the chain.
    """
    args = (jnp.asarray(counts, float), jnp.asarray(keep, float), jnp.asarray(matrix, float))
    kernel, run_chunk = _kernel(sample_matrix, settings.n_warmup, tuple(counts.shape))
    state = kernel.init(jax.random.PRNGKey(settings.seed), settings.n_warmup, None, args, {})
    total = settings.n_warmup + settings.n_samples
    kept_p, kept_div, kept_steps = [], [], []
    done = 0
    while done < total:
        # Always a whole chunk (one compiled shape); iterations past the total are dropped.
        length = min(settings.chunk, total - done)
        state, outputs = jax.block_until_ready(run_chunk(state, args, settings.chunk))
        p, diverging, steps = (np.asarray(x)[:length] for x in outputs)
        first_kept = max(settings.n_warmup - done, 0)
        if first_kept < length:
            kept_p.append(p[first_kept:])
            kept_div.append(diverging[first_kept:])
            kept_steps.append(steps[first_kept:])
        done += length
        on_chunk(done, total)
    draws = np.concatenate(kept_p)
    steps = np.concatenate(kept_steps)
    return draws, diagnose(draws, int(np.concatenate(kept_div).sum()), int((steps >= 2**MAX_TREE_DEPTH - 1).sum()))


def _rank_normal(x: np.ndarray) -> np.ndarray:
    ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable") + 1
    return np.asarray(ndtri((ranks - 0.375) / (len(x) + 0.25)))


def diagnose(draws: np.ndarray, divergences: int, treedepth_hits: int) -> Diagnostics:
    """Rank-normalised split R-hat and bulk ESS of each p_j (as rstan's Rhat and ess_bulk)."""
    half = len(draws) // 2
    rhats, ess = [], []
    for column in draws.T:
        if np.ptp(column) == 0:
            continue
        z = _rank_normal(column[: 2 * half]).reshape(2, half)
        rhats.append(float(gelman_rubin(z[:, :, None])[0]) if half > 3 else math.nan)
        ess.append(float(effective_sample_size(z[:, :, None])[0]) / len(draws))
    return Diagnostics(
        max_rhat=max(rhats, default=math.nan),
        min_ess_bulk_ratio=min(ess, default=math.nan),
        divergences=divergences,
        max_treedepth_hits=treedepth_hits,
    )
