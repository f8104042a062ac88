"""Sample folders, sample grids and the paper's visualisations (the ``sample`` stage's library).

Every image is a pure function of ``(seed, index)``: the latent ``z`` *and* the per-layer noise
of sample ``i`` come from their own random stream, so sample ``i`` is the same whatever the batch
size, the number of samples or the device it was drawn for (generated on the CPU, then moved).
The grids and interpolation strips reuse the same streams, so row ``r`` of a strip starts from the
same ``z`` as ``NNNNNN.png`` number ``2r`` of the sample folder.

All synthesis goes through ``G.get_latent(z)`` (mapping) followed by
``G([w], input_is_latent=True, noise=..., randomize_noise=False)``: truncation, w-space edits and
interpolations are then done on ``w`` here, once, instead of relying on each generator option.

A w_shift fine-tuned generator carries its vector in a WShift module at the end of the mapping
network (the reference's layout), so ``get_latent``/``mean_latent`` include it and every function
below treats it like any other generator (the shift is added to every layer's ``w`` before
truncation, and ``input_is_latent=True`` inputs are taken as already shifted).
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from sketchgan.errors import SketchganError
from sketchgan.io import atomic_dir, make_grid, save_image_folder, save_png

# Independent random streams: sample latents/noise, mean-latent estimation, GANSpace PCA.
_STREAM_SAMPLE = 0
_STREAM_MEAN = 1
_STREAM_PCA = 2

MEAN_LATENT_SAMPLES = 4096
NoiseMode = Literal["random", "const"]


# --------------------------------------------------------------------------- w_shift


def _shift_of(G: nn.Module) -> torch.Tensor | None:
    getter = getattr(G, "w_shift", None)
    return getter() if callable(getter) else None


def apply_w_shift(G: nn.Module, shift: torch.Tensor | None) -> nn.Module:
    """A copy of ``G`` whose mapping output is moved by ``shift`` more (``None``: ``G`` itself).

    The shift lives in the generator's own WShift module (``style.<n_mlp + 1>.w_shift``, the
    reference's layout), so a shifted generator is used, saved and loaded like any other;
    shifting a shifted generator adds the shifts.
    """
    if shift is None:
        return G
    shift = torch.as_tensor(shift).float()
    style_dim = int(G.style_dim)
    if shift.numel() != style_dim:
        raise SketchganError(
            f"w_shift: expected {style_dim} values (style_dim), got {tuple(shift.shape)}"
        )
    out = copy.deepcopy(G)
    old = _shift_of(out)
    base = old.detach() if old is not None else torch.zeros(1, style_dim)
    out.add_w_shift(base + shift.reshape(1, -1).to(base.device))
    return out


def apply_checkpoint_shift(G: nn.Module, checkpoint: Mapping[str, Any]) -> nn.Module:
    """Shift ``G`` by a checkpoint's top-level ``w_shift`` entry (files of older versions)."""
    return apply_w_shift(G, checkpoint.get("w_shift"))


def split_w_shift(G: nn.Module) -> tuple[nn.Module, torch.Tensor]:
    """A copy of ``G`` without its shift, and the shift (zeros when none), shaped (1, D)."""
    shift = _shift_of(G)
    if shift is None:
        device = _model_device(G)
        return G, torch.zeros(1, int(G.style_dim), device=device)
    base = copy.deepcopy(G)
    return base, base.remove_w_shift().reshape(1, -1)


# --------------------------------------------------------------------------- random streams


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SketchganError(f"seed: expected an integer >= 0, got {seed!r}")
    return int(seed)


def _stream(seed: int, stream: int, index: int = 0) -> torch.Generator:
    """A CPU generator for (seed, stream, index): neighbouring indices give unrelated numbers."""
    words = np.random.SeedSequence(entropy=seed, spawn_key=(stream, index)).generate_state(2)
    return torch.Generator().manual_seed((int(words[0]) << 31) | (int(words[1]) >> 1))


def noise_shapes(G: nn.Module) -> list[tuple[int, ...]]:
    """Per-layer noise shapes (without batch) read from the ``noises.noise_N`` buffers."""
    found: dict[int, tuple[int, ...]] = {}
    for name, buf in G.named_buffers():
        match = re.search(r"(?:^|\.)noises\.noise_(\d+)$", name)
        if match:
            found[int(match.group(1))] = tuple(buf.shape[1:])
    if sorted(found) != list(range(len(found))):
        raise SketchganError(f"generator: noise buffers are not numbered 0..N-1: {sorted(found)}")
    return [found[i] for i in range(len(found))]


def draw_inputs(
    seed: int, indices: Sequence[int], style_dim: int, shapes: Sequence[tuple[int, ...]]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Latents (N, D) and per-layer noise [(N, *shape)] of the given sample indices (CPU)."""
    seed = _check_seed(seed)
    zs, noises = [], [[] for _ in shapes]
    for index in indices:
        gen = _stream(seed, _STREAM_SAMPLE, int(index))
        zs.append(torch.randn(style_dim, generator=gen))
        for layer, shape in enumerate(shapes):
            noises[layer].append(torch.randn(shape, generator=gen))
    return torch.stack(zs), [torch.stack(n) for n in noises]


# --------------------------------------------------------------------------- synthesis helpers


def _model_device(G: nn.Module) -> torch.device:
    for tensor in G.parameters():
        return tensor.device
    return torch.device("cpu")


def _resolve_device(G: nn.Module, device: torch.device | str | None) -> torch.device:
    return _model_device(G) if device is None else torch.device(device)


def _check_truncation(truncation: float) -> float:
    if not 0 < float(truncation) <= 1:
        raise SketchganError(f"truncation: expected 0 < psi <= 1, got {truncation!r}")
    return float(truncation)


@torch.no_grad()
def compute_mean_latent(
    G: nn.Module,
    n: int = MEAN_LATENT_SAMPLES,
    seed: int = 0,
    device: torch.device | str | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Mean of ``w`` over ``n`` seeded latents, shaped (1, D): the truncation centre.

    Seeded (unlike ``G.mean_latent``, which uses the global RNG) so truncated figures repeat.
    """
    device = _resolve_device(G, device)
    gen = _stream(_check_seed(seed), _STREAM_MEAN)
    total = torch.zeros(1, int(G.style_dim), dtype=torch.float64, device=device)
    for start in range(0, n, chunk):
        z = torch.randn(min(chunk, n - start), int(G.style_dim), generator=gen)
        total += G.get_latent(z.to(device)).double().sum(0, keepdim=True)
    return (total / n).float()


def _truncate(w: torch.Tensor, mean: torch.Tensor | None, psi: float) -> torch.Tensor:
    if psi == 1.0:
        return w
    return mean.reshape(1, -1).to(w) + psi * (w - mean.reshape(1, -1).to(w))


def _mean_if_needed(
    G: nn.Module, truncation: float, mean_latent: torch.Tensor | None, seed: int, device
) -> torch.Tensor | None:
    if truncation == 1.0 or mean_latent is not None:
        return mean_latent
    return compute_mean_latent(G, seed=seed, device=device)


def _synthesize(
    G: nn.Module, w: torch.Tensor, noise: list[torch.Tensor] | None, device: torch.device
) -> torch.Tensor:
    """Images (N, C, H, W) on the CPU from ``w`` (N, D); ``noise=None`` uses stored buffers."""
    noise = None if noise is None else [n.to(device) for n in noise]
    img, _ = G([w.to(device)], input_is_latent=True, noise=noise, randomize_noise=False)
    return img.detach().float().cpu()


def _inputs_for(
    G: nn.Module, seed: int, indices: Sequence[int], noise_mode: NoiseMode
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    if noise_mode not in ("random", "const"):
        raise SketchganError(f"noise_mode: expected 'random' or 'const', got {noise_mode!r}")
    shapes = noise_shapes(G) if noise_mode == "random" else []
    z, noise = draw_inputs(seed, indices, int(G.style_dim), shapes)
    return z, (noise if noise_mode == "random" and shapes else None)


@torch.no_grad()
def generate_images(
    G: nn.Module,
    indices: Sequence[int],
    seed: int,
    truncation: float = 1.0,
    mean_latent: torch.Tensor | None = None,
    noise_mode: NoiseMode = "random",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Samples ``indices`` of the seeded sequence, in [-1, 1], (N, C, H, W) on the CPU."""
    truncation = _check_truncation(truncation)
    device = _resolve_device(G, device)
    mean_latent = _mean_if_needed(G, truncation, mean_latent, seed, device)
    z, noise = _inputs_for(G, seed, indices, noise_mode)
    w = _truncate(G.get_latent(z.to(device)), mean_latent, truncation)
    return _synthesize(G, w, noise, device)


# --------------------------------------------------------------------------- folders and grids


def _report_progress(label: str, done: int, total: int, last_decile: int) -> int:
    decile = (10 * done) // total
    if decile > last_decile:
        print(f"{label}: {done}/{total}", file=sys.stderr, flush=True)
    return decile


def sample_folder(
    G: nn.Module,
    n: int,
    out_dir: str | Path,
    seed: int,
    batch: int = 16,
    truncation: float = 1.0,
    mean_latent: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    noise_mode: NoiseMode = "random",
) -> Path:
    """Write samples ``000000.png``... into ``out_dir``, replacing it only once all are done.

    The spec's evaluation set is 2,500 samples without truncation; batch only changes speed.
    """
    if n < 1:
        raise SketchganError(f"sample.n: expected >= 1 samples, got {n}")
    if batch < 1:
        raise SketchganError(f"sample.batch: expected >= 1, got {batch}")
    truncation = _check_truncation(truncation)
    device = _resolve_device(G, device)
    mean_latent = _mean_if_needed(G, truncation, mean_latent, seed, device)
    out_dir = Path(out_dir)
    decile = 0
    with atomic_dir(out_dir) as tmp:
        for start in range(0, n, batch):
            indices = range(start, min(start + batch, n))
            images = generate_images(G, indices, seed, truncation, mean_latent, noise_mode, device)
            save_image_folder(images, tmp, start=start)
            if progress:
                decile = _report_progress(f"sample {out_dir}", indices[-1] + 1, n, decile)
    return out_dir


def sample_grid(
    G: nn.Module,
    n: int,
    seed: int,
    truncation: float,
    path: str | Path,
    nrow: int | None = None,
    mean_latent: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    noise_mode: NoiseMode = "random",
) -> Path:
    """One sheet of the first ``n`` samples (same z as the folder); the spec shows psi = 0.5."""
    images = generate_images(G, range(n), seed, truncation, mean_latent, noise_mode, device)
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    save_png(make_grid(images, nrow=nrow), path)
    return Path(path)


def save_labelled_rows(
    rows: torch.Tensor, labels: Sequence[str] | None, path: str | Path, pad: int = 2
) -> Path:
    """Save (R, S, C, H, W) as R rows of S images, with an optional text label left of each row.

    Labels make the strips readable on their own (which row is weight space, which model).
    """
    n_rows, n_cols = rows.shape[:2]
    grid = make_grid(rows.reshape(n_rows * n_cols, *rows.shape[2:]), nrow=n_cols, pad=pad)
    if labels:
        grid = _add_row_labels(grid, list(labels), rows.shape[3], pad)
    save_png(grid, path)
    return Path(path)


def _add_row_labels(grid: np.ndarray, labels: list[str], height: int, pad: int) -> np.ndarray:
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(int(probe.textlength(label, font=font)) for label in labels) + 2 * pad + 2
    canvas = Image.new("RGB", (grid.shape[1] + width, grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for r, label in enumerate(labels):
        y = pad + r * (height + pad) + max(0, height // 2 - 6)
        draw.text((pad, y), label, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


# --------------------------------------------------------------------------- interpolation


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation row by row: Gaussian z keep their typical norm along the path."""
    a_n = a / a.norm(dim=-1, keepdim=True)
    b_n = b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if bool((so.abs() < 1e-6).any()):
        return torch.lerp(a, b, t)
    return (torch.sin((1.0 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


@torch.no_grad()
def latent_interpolation_images(
    G: nn.Module,
    seed: int,
    steps: int,
    n_rows: int = 4,
    space: Literal["z", "w"] = "w",
    truncation: float = 0.5,
    mean_latent: torch.Tensor | None = None,
    noise_mode: NoiseMode = "random",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(n_rows, steps, C, H, W): row r goes from sample 2r to sample 2r+1.

    ``space="w"`` interpolates linearly in w (StyleGAN's w is not Gaussian, lerp is the usual
    choice there); ``space="z"`` uses slerp in z. Noise is held fixed along a row.
    """
    if steps < 2 or n_rows < 1:
        raise SketchganError(f"interpolation: need steps >= 2 and rows >= 1, got {steps}, {n_rows}")
    if space not in ("z", "w"):
        raise SketchganError(f"interpolation.space: expected 'z' or 'w', got {space!r}")
    truncation = _check_truncation(truncation)
    device = _resolve_device(G, device)
    mean_latent = _mean_if_needed(G, truncation, mean_latent, seed, device)
    z, noise = _inputs_for(G, seed, range(2 * n_rows), noise_mode)
    z_a, z_b = z[0::2].to(device), z[1::2].to(device)
    row_noise = None if noise is None else [n[0::2] for n in noise]
    columns = []
    for t in torch.linspace(0, 1, steps).tolist():
        if space == "z":
            w = G.get_latent(slerp(z_a, z_b, t))
        else:
            w = torch.lerp(G.get_latent(z_a), G.get_latent(z_b), t)
        columns.append(_synthesize(G, _truncate(w, mean_latent, truncation), row_noise, device))
    return torch.stack(columns, dim=1)


def latent_interpolation(
    G: nn.Module,
    seed: int,
    steps: int,
    path: str | Path,
    n_rows: int = 4,
    space: Literal["z", "w"] = "w",
    truncation: float = 0.5,
    mean_latent: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> Path:
    """Interpolation strips between pairs of samples (lerp in w by default, slerp in z)."""
    rows = latent_interpolation_images(
        G, seed, steps, n_rows, space, truncation, mean_latent, device=device
    )
    return save_labelled_rows(rows, None, path)


def lerp_state_dicts(
    sd0: Mapping[str, torch.Tensor], sd1: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """theta = (1 - alpha) theta0 + alpha theta1 for float tensors (exact at alpha 0 and 1).

    Integer buffers cannot be interpolated: they are taken from the nearer end point.
    """
    if set(sd0) != set(sd1):
        diff = sorted(set(sd0) ^ set(sd1))[:3]
        raise SketchganError(f"weight interpolation: the two models' keys differ, e.g. {diff}")
    out = {}
    for key, a in sd0.items():
        b = sd1[key]
        if a.shape != b.shape:
            raise SketchganError(
                f"weight interpolation: '{key}' has shapes {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if a.is_floating_point():
            out[key] = torch.lerp(a, b.to(a), float(alpha))
        else:
            out[key] = (a if alpha < 0.5 else b).clone()
    return out


def interpolate_generators(G0: nn.Module, G1: nn.Module, alpha: float) -> nn.Module:
    """A new generator with weights (1 - alpha) G0 + alpha G1; a w_shift is interpolated too."""
    base0, shift0 = split_w_shift(G0)
    base1, shift1 = split_w_shift(G1)
    mixed = copy.deepcopy(base0)
    mixed.load_state_dict(lerp_state_dicts(base0.state_dict(), base1.state_dict(), alpha))
    if _shift_of(G0) is None and _shift_of(G1) is None:
        return mixed
    mixed.add_w_shift(torch.lerp(shift0, shift1.to(shift0), float(alpha)))
    return mixed


def _synthesis_differs(G0: nn.Module, G1: nn.Module) -> bool:
    """True when weights outside the mapping network (``style.*``) differ between the models."""
    sd0, sd1 = G0.state_dict(), G1.state_dict()
    return any(
        not torch.equal(sd0[k], sd1[k].to(sd0[k].device))
        for k in sd0
        if not k.startswith("style.") and k in sd1
    )


@torch.no_grad()
def model_interpolation_images(
    G_orig: nn.Module,
    G_ft: nn.Module,
    steps: int,
    seed: int,
    n_samples: int = 3,
    truncation: float = 0.5,
    noise_mode: NoiseMode = "random",
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """{"weight": (n, steps, C, H, W), "w": (n, steps, C, H, W)} from original to fine-tuned.

    Weight space: every tensor is interpolated (``interpolate_generators``). w space: each
    model's own mapping (and truncation centre) gives w0 and w1, lerped, then synthesised by
    the original synthesis network, which mapping-only and w_shift fine-tuning leave as is.
    After whole-generator fine-tuning that network is not the fine-tuned one, so the w path
    would not end at the fine-tuned model: "w" is then left out.
    """
    if steps < 2:
        raise SketchganError(f"weight interpolation: need steps >= 2, got {steps}")
    truncation = _check_truncation(truncation)
    device = _resolve_device(G_orig, device)
    alphas = torch.linspace(0, 1, steps).tolist()
    z, noise = _inputs_for(G_orig, seed, range(n_samples), noise_mode)
    z = z.to(device)
    weight_cols = []
    for alpha in alphas:
        G_a = interpolate_generators(G_orig, G_ft, alpha).to(device)
        mean = _mean_if_needed(G_a, truncation, None, seed, device)
        weight_cols.append(
            _synthesize(G_a, _truncate(G_a.get_latent(z), mean, truncation), noise, device)
        )
    if _synthesis_differs(G_orig, G_ft):
        return {"weight": torch.stack(weight_cols, 1)}
    w_ends = []
    for G in (G_orig, G_ft):
        mean = _mean_if_needed(G, truncation, None, seed, device)
        w_ends.append(_truncate(G.get_latent(z), mean, truncation))
    synthesis = G_orig  # input_is_latent: its own shift (if any) is not applied again
    w_cols = [
        _synthesize(synthesis, torch.lerp(w_ends[0], w_ends[1], a), noise, device) for a in alphas
    ]
    return {"weight": torch.stack(weight_cols, 1), "w": torch.stack(w_cols, 1)}


def weight_interpolation(
    G_orig: nn.Module,
    G_ft: nn.Module,
    steps: int,
    seed: int,
    path: str | Path,
    n_samples: int = 3,
    truncation: float = 0.5,
    device: torch.device | str | None = None,
) -> Path:
    """Original -> fine-tuned strips: for each sample a weight-space row, then a w-space row
    when the fine-tuning left the synthesis network alone."""
    images = model_interpolation_images(
        G_orig, G_ft, steps, seed, n_samples, truncation, device=device
    )
    spaces = [(key, name) for key, name in (("weight", "weights"), ("w", "w")) if key in images]
    rows = torch.stack([images[key] for key, _ in spaces], dim=1).flatten(0, 1)
    labels = [f"{i} {name}" for i in range(n_samples) for _, name in spaces]
    return save_labelled_rows(rows, labels, path)


# --------------------------------------------------------------------------- GANSpace


@torch.no_grad()
def ganspace_directions(
    G: nn.Module,
    n_samples: int = 10000,
    k: int = 8,
    seed: int = 0,
    device: torch.device | str | None = None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of w (pass the ORIGINAL model): ``(mean (D,), components (k, D))`` on the CPU.

    Row i of ``components`` is the i-th principal direction scaled to one standard deviation
    along it, so ``w + t * components[i]`` moves w by ``t`` sigma (GANSpace's edit unit).
    Signs are fixed (largest entry positive) so the same model gives the same edits.
    """
    dim = int(G.style_dim)
    if not 1 <= k <= dim or n_samples <= k:
        raise SketchganError(
            f"ganspace: need 1 <= k <= {dim} and n_samples > k, got {k}, {n_samples}"
        )
    device = _resolve_device(G, device)
    gen = _stream(_check_seed(seed), _STREAM_PCA)
    ws = []
    for start in range(0, n_samples, chunk):
        z = torch.randn(min(chunk, n_samples - start), dim, generator=gen)
        ws.append(G.get_latent(z.to(device)).double().cpu())
    w = torch.cat(ws)
    mean = w.mean(0)
    cov = (w - mean).T @ (w - mean) / (n_samples - 1)
    eigval, eigvec = torch.linalg.eigh(cov)
    order = torch.argsort(eigval, descending=True)[:k]
    vecs = eigvec[:, order].T
    signs = torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    components = vecs * signs * eigval[order].clamp_min(0).sqrt().unsqueeze(1)
    return mean.float(), components.float()


def _as_labelled_models(G: nn.Module | Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    if isinstance(G, Mapping):
        if not G:
            raise SketchganError("ganspace: no generators given")
        return dict(G)
    return {"model": G}


@torch.no_grad()
def ganspace_edit_images(
    G: nn.Module,
    directions: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    component_ids: Sequence[int] = (0, 1, 2),
    sigmas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    n_samples: int = 2,
    truncation: float = 0.5,
    noise_mode: NoiseMode = "random",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(n_samples * len(component_ids), len(sigmas), C, H, W): w + sigma * component per row."""
    _, components = directions
    bad = [c for c in component_ids if not 0 <= c < components.shape[0]]
    if bad:
        raise SketchganError(f"ganspace: component ids {bad} out of range 0..{len(components) - 1}")
    truncation = _check_truncation(truncation)
    device = _resolve_device(G, device)
    mean = _mean_if_needed(G, truncation, None, seed, device)
    z, noise = _inputs_for(G, seed, range(n_samples), noise_mode)
    w = _truncate(G.get_latent(z.to(device)), mean, truncation)
    rows = []
    for i in range(n_samples):
        sample_noise = None if noise is None else [n[i : i + 1] for n in noise]
        for c in component_ids:
            direction = components[c].to(w)
            edited = torch.stack([w[i] + float(s) * direction for s in sigmas])
            rows.append(_synthesize(G, edited, _repeat_noise(sample_noise, len(sigmas)), device))
    return torch.stack(rows)


def _repeat_noise(noise: list[torch.Tensor] | None, times: int) -> list[torch.Tensor] | None:
    return None if noise is None else [n.expand(times, *n.shape[1:]) for n in noise]


def ganspace_edit_strip(
    G: nn.Module | Mapping[str, nn.Module],
    directions: tuple[torch.Tensor, torch.Tensor],
    path: str | Path,
    seed: int = 0,
    component_ids: Sequence[int] = (0, 1, 2),
    sigmas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    n_samples: int = 2,
    truncation: float = 0.5,
    device: torch.device | str | None = None,
) -> Path:
    """Edit strips for one model or several (e.g. {"original": G0, "fine-tuned": G1}).

    With several models the rows interleave per sample and component, so the same edit on the
    original and on the customised model sit one above the other.
    """
    models = _as_labelled_models(G)
    per_model = {
        name: ganspace_edit_images(
            model, directions, seed, component_ids, sigmas, n_samples, truncation, device=device
        )
        for name, model in models.items()
    }
    n_rows = n_samples * len(component_ids)
    rows, labels = [], []
    for r in range(n_rows):
        sample, comp = divmod(r, len(component_ids))
        for name, images in per_model.items():
            rows.append(images[r])
            labels.append(f"{sample} pc{component_ids[comp]} {name}")
    return save_labelled_rows(torch.stack(rows), labels, path)


# --------------------------------------------------------------------------- all figures


def write_visualisations(
    G_orig: nn.Module,
    G_ft: nn.Module,
    out_dir: str | Path,
    seed: int = 0,
    truncation: float = 0.5,
    n_grid: int = 16,
    steps: int = 7,
    n_rows: int = 4,
    ganspace_samples: int = 10000,
    ganspace_k: int = 8,
    component_ids: Sequence[int] = (0, 1, 2),
    sigmas: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    space: Literal["z", "w"] = "w",
    device: torch.device | str | None = None,
) -> dict[str, Path]:
    """Every figure the paper shows, as PNGs in ``out_dir``; returns {caption: path} for the report.

    The directory is replaced as a whole so a failed run never mixes old and new figures.
    """
    names = {
        "original samples (psi {t})": "grid_original.png",
        "fine-tuned samples (psi {t})": "grid_finetuned.png",
        "latent interpolation, fine-tuned ({how})": "latent_interpolation.png",
        "original -> fine-tuned (weights; w if synthesis unchanged)": "model_interpolation.png",
        "GANSpace edits of the original applied to both": "ganspace_edits.png",
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        files = list(names.values())
        sample_grid(G_orig, n_grid, seed, truncation, tmp / files[0], device=device)
        sample_grid(G_ft, n_grid, seed, truncation, tmp / files[1], device=device)
        latent_interpolation(
            G_ft, seed, steps, tmp / files[2], n_rows, space, truncation, device=device
        )
        weight_interpolation(
            G_orig, G_ft, steps, seed, tmp / files[3], truncation=truncation, device=device
        )
        directions = ganspace_directions(G_orig, ganspace_samples, ganspace_k, seed, device)
        ganspace_edit_strip(
            {"original": G_orig, "fine-tuned": G_ft},
            directions,
            tmp / files[4],
            seed,
            component_ids,
            sigmas,
            truncation=truncation,
            device=device,
        )
    how = "lerp in w" if space == "w" else "slerp in z"
    return {caption.format(t=truncation, how=how): out_dir / f for caption, f in names.items()}
