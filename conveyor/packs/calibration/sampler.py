"""The Bayesian calibration model of vacalibration 2.1, sampled with NUTS (NumPyro on JAX's CPU).

The model, on the causes U that are calibrated (for at least one algorithm): a CSMF
`u ~ Dirichlet(1, …, 1)` over U; per algorithm k a misclassification matrix M_k that is the
identity on U's causes k leaves out and a row-stochastic block on the ones it calibrates
(S_k); and `a_k[U] ~ Multinomial(M_kᵀ u)`. It is the package's model with the causes left out
integrated away, not an approximation of it: M_k is the identity outside S_k, so the
package's likelihood factors into a part in the total share of U and a part in u = p[U] /
sum(p[U]), and under p ~ Dirichlet(1) those two are independent, u ~ Dirichlet(1) over U. The
calibrated CSMF only ever uses u. Likewise a row's S_k-part, normalised, is Dirichlet with the
S_k-part of the row's parameters, so the rows and columns outside U need not be sampled.

Each simplex is sampled in additive log-ratio coordinates (the last entry's logit fixed at 0),
where a Dirichlet(alpha) density is Π x_i^alpha_i with the Jacobian included; the potential is written
out rather than traced from a NumPyro model (a gradient costs about 1 µs), and NUTS adapts a
dense mass matrix, as p and the matrix trade off against each other: a third of the leapfrog
steps of the diagonal metric. One compiled sampler serves every request with the same number
of algorithms, calibrated causes and warm-up iterations (masks, not shapes, carry S_k inside
U); it is compiled once per process and kept on disk across processes.

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

import jax
import jax.numpy as jnp
from jax.nn import log_softmax
from jax.scipy.special import ndtri
from numpyro.diagnostics import effective_sample_size, gelman_rubin
from numpyro.infer.hmc import hmc

jax.config.update("jax_enable_x64", True)


def compilation_cache_directory() -> Path:
    """Where XLA's compiled samplers are kept across processes: JAX_COMPILATION_CACHE_DIR when
    set, else `jax-cache` in conveyor's data directory (CONVEYOR_DATA_DIR)."""
    configured = os.environ.get("JAX_COMPILATION_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    from conveyor.settings import Settings

    return Path(Settings().data_dir).expanduser().resolve() / "jax-cache"


# Every compiled program is kept, the small ones too: a fresh worker then skips XLA entirely.
jax.config.update("jax_compilation_cache_dir", str(compilation_cache_directory()))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

MAX_TREE_DEPTH = 10
TARGET_ACCEPT = 0.9  # the package's adapt_delta


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
    """M (KxnxN): identity outside S_k, the rows restricted to S_k and re-normalised inside."""
    block = keep[:, :, None] * keep[:, None, :]
    sub = rows * block
    total = sub.sum(-1, keepdims=True)
    sub = sub / jnp.where(total > 0, total, 1.0)
    identity = jnp.eye(keep.shape[-1]) * (1.0 - keep)[:, :, None]
    return sub + identity


def _log_simplex(y: jnp.ndarray) -> jnp.ndarray:
    """Additive log-ratio coordinates (..., n-1) -> the log of a point of the simplex (..., n)."""
    return log_softmax(jnp.concatenate([y, jnp.zeros((*y.shape[:-1], 1))], axis=-1), axis=-1)


def dimension(n_algorithms: int, n_causes: int, sample_matrix: bool) -> int:
    return (n_causes - 1) * (1 + (n_algorithms * n_causes if sample_matrix else 0))


def _potential_maker(n_algorithms: int, n_causes: int, sample_matrix: bool) -> Callable[..., Any]:
    """The negative log posterior density in unconstrained coordinates, for given data."""

    def make(counts: jnp.ndarray, keep: jnp.ndarray, matrix: jnp.ndarray) -> Callable[[jnp.ndarray], jnp.ndarray]:
        def potential(z: jnp.ndarray) -> jnp.ndarray:
            log_u = _log_simplex(z[: n_causes - 1])
            log_density = log_u.sum()  # Dirichlet(1) with its Jacobian: Σ log u_i
            if sample_matrix:
                log_rows = _log_simplex(z[n_causes - 1 :].reshape(n_algorithms, n_causes, n_causes - 1))
                log_density = log_density + jnp.sum(matrix * log_rows)  # Dirichlet(alpha) rows, Jacobian included
                rates = _misclassification(keep, jnp.exp(log_rows))
            else:
                rates = _misclassification(keep, matrix)
            probs = jnp.einsum("i,kij->kj", jnp.exp(log_u), rates)
            return -(log_density + jnp.sum(counts * jnp.log(probs)))

        return potential

    return make


def csmf(z: jnp.ndarray, n_causes: int) -> jnp.ndarray:
    return jnp.exp(_log_simplex(z[: n_causes - 1]))


@functools.cache
def _compiled(sample_matrix: bool, n_warmup: int, shape: tuple[int, int]) -> tuple[Any, Any]:
    """The jitted start and chunk runner of NUTS for one model shape, kept for the process:
    JAX traces and compiles them on first use only (and XLA's output is cached on disk)."""
    n_algorithms, n_causes = shape
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=_potential_maker(n_algorithms, n_causes, sample_matrix), algo="NUTS"
    )

    @jax.jit
    def start(z: jnp.ndarray, key: jnp.ndarray, args: tuple[jnp.ndarray, ...]) -> Any:
        return init_kernel(
            z,
            n_warmup,
            target_accept_prob=TARGET_ACCEPT,
            max_tree_depth=MAX_TREE_DEPTH,
            dense_mass=True,
            model_args=args,
            rng_key=key,
        )

    @functools.partial(jax.jit, static_argnums=(2,))
    def run_chunk(state: Any, args: tuple[jnp.ndarray, ...], length: int) -> tuple[Any, Any]:
        def step(s: Any, _: Any) -> tuple[Any, Any]:
            s = sample_kernel(s, args)
            return s, (csmf(s.z, n_causes), s.diverging, s.num_steps)

        return jax.lax.scan(step, state, None, length=length)

    return start, run_chunk


def sample(
    counts: np.ndarray,
    keep: np.ndarray,
    matrix: np.ndarray,
    *,
    sample_matrix: bool,
    settings: SamplerSettings,
    on_chunk: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[np.ndarray, Diagnostics]:
    """Posterior draws of u (n_samples x n) and the chain's diagnostics.

    On the n calibrated causes only: counts: Kxn deaths; keep: Kxn, 1.0 where cause j is
    calibrated for algorithm k; matrix: Kxnxn Dirichlet parameters (sample_matrix) or
    misclassification rates. `on_chunk(done, total)` is called after each chunk of
    iterations; it may raise to stop the chain.
    """
    args = (jnp.asarray(counts, float), jnp.asarray(keep, float), jnp.asarray(matrix, float))
    n_algorithms, n_causes = counts.shape
    start, run_chunk = _compiled(sample_matrix, settings.n_warmup, (n_algorithms, n_causes))
    # Stan's start: uniform on (-2, 2) in the unconstrained coordinates.
    rng = np.random.default_rng(settings.seed)
    z = jnp.asarray(rng.uniform(-2, 2, dimension(n_algorithms, n_causes, sample_matrix)))
    state = start(z, jax.random.PRNGKey(settings.seed), args)
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
