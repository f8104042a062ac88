"""World evaluator: a small CNN that reads shape class and pose off an embedded-world image.

It serves two purposes. (a) Its penultimate layer is the declared fallback feature space for
FID/KID/precision-recall when clean-fid's Inception weights cannot be downloaded. (b) It predicts
the attributes of generated images, so "share of samples showing the sketched shape and pose" is
measured with :func:`sketchgan.data.world.matches_target` rather than assumed.

Targets: shape class (cross-entropy); cx, cy, scale mapped linearly from the world's ranges to
[-1, 1]; log(aspect) likewise; rotation as (cos, sin) of ``rotation * 360 / period`` with period
72 degrees, the world's rotation range. The star's 72-degree symmetry makes -36 and +36 the same
picture, and this encoding maps them to the same point; near-circular ellipses (rotation
invisible) are left out of the rotation loss and the rotation error.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sketchgan.checkpoints import load_config_model, save_config_model
from sketchgan.data import world
from sketchgan.errors import SketchganError
from sketchgan.training import loop

#: Width of the world's rotation range: one full turn of the (cos, sin) rotation code.
ROTATION_PERIOD = 72.0
LINEAR_FIELDS = ("cx", "cy", "scale")
FEATURE_DIM = 256
FINAL_LOSS_WINDOW = 50  # iterations per loss mean; the last one is the reported final_loss


def _default_config(size: int, width: int) -> dict[str, Any]:
    """Everything needed to rebuild and decode the network, kept in the checkpoint."""
    ranges = {f: list(world.WORLD_RANGES[f]) for f in (*LINEAR_FIELDS, "aspect")}
    return {
        "size": size,
        "width": width,
        "shapes": list(world.SHAPES),
        "ranges": ranges,
        "rotation_period": ROTATION_PERIOD,
        "rotation_center": float(np.mean(world.WORLD_RANGES["rotation"])),
        "circle_aspect": float(world.CIRCLE_ASPECT),
    }


class WorldEvaluator(nn.Module):
    """Conv trunk halving the image down to 4x4, a 256-D feature layer, two heads."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        size, width = int(config["size"]), int(config["width"])
        if size < 8 or size & (size - 1):
            raise SketchganError(f"evaluator: size must be a power of two >= 8, got {size}")
        self.config = dict(config)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        channels, res = width, size
        while res > 4:
            out = min(channels * 2, width * 4)
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
                nn.Conv2d(out, out, 3, padding=1),
                nn.LeakyReLU(0.2),
            ]
            channels, res = out, res // 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(channels * 16, FEATURE_DIM), nn.LeakyReLU(0.2))
        self.classify = nn.Linear(FEATURE_DIM, len(config["shapes"]))
        self.regress = nn.Linear(FEATURE_DIM, len(LINEAR_FIELDS) + 1 + 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [-1, 1] (the fallback FID feature space)."""
        return self.embed(self.trunk(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return self.classify(feats), self.regress(feats)


# --------------------------------------------------------------------------- target coding


def _to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (values - lo) / (hi - lo) * 2.0 - 1.0


def _from_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (values + 1.0) / 2.0 * (hi - lo) + lo


def encode_targets(attrs: pd.DataFrame, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Attribute table -> class indices, regression targets (N, 6) and rotation-loss mask."""
    shapes = list(config["shapes"])
    unknown = sorted(set(attrs["shape"]) - set(shapes))
    if unknown:
        raise SketchganError(f"attrs: shape {unknown[0]!r} unknown to the evaluator")
    ranges = config["ranges"]
    cols = [_to_unit(attrs[f].to_numpy(float), *ranges[f]) for f in LINEAR_FIELDS]
    lo, hi = ranges["aspect"]
    cols.append(_to_unit(np.log(attrs["aspect"].to_numpy(float)), math.log(lo), math.log(hi)))
    phase = np.deg2rad(
        (attrs["rotation"].to_numpy(float) - config["rotation_center"])
        * 360.0
        / config["rotation_period"]
    )
    cols += [np.cos(phase), np.sin(phase)]
    aspect = attrs["aspect"].to_numpy(float)
    circle = (attrs["shape"].to_numpy() == "ellipse") & (
        np.maximum(aspect, 1 / aspect) <= config["circle_aspect"]
    )
    return {
        "label": torch.as_tensor([shapes.index(s) for s in attrs["shape"]], dtype=torch.long),
        "reg": torch.as_tensor(np.stack(cols, axis=1), dtype=torch.float32),
        "rot_mask": torch.as_tensor(~circle, dtype=torch.float32),
    }


def decode_outputs(logits: torch.Tensor, reg: torch.Tensor, config: dict[str, Any]) -> pd.DataFrame:
    """Network outputs -> attribute table in the world's units (degrees, fractions, ratio)."""
    probs = logits.softmax(dim=1)
    conf, idx = probs.max(dim=1)
    reg = reg.detach().cpu().numpy().astype(float)
    ranges = config["ranges"]
    out: dict[str, Any] = {"shape": np.asarray(config["shapes"], dtype=object)[idx.cpu().numpy()]}
    for i, f in enumerate(LINEAR_FIELDS):
        out[f] = _from_unit(reg[:, i], *ranges[f])
    lo, hi = ranges["aspect"]
    log_aspect = _from_unit(reg[:, 3], math.log(lo), math.log(hi))
    angle = np.rad2deg(np.arctan2(reg[:, 5], reg[:, 4])) * config["rotation_period"] / 360.0
    out["rotation"] = angle + config["rotation_center"]
    out["aspect"] = np.exp(log_aspect)
    out["shape_prob"] = conf.detach().cpu().numpy().astype(float)
    return pd.DataFrame(
        out, columns=["shape", "cx", "cy", "scale", "rotation", "aspect", "shape_prob"]
    )


# --------------------------------------------------------------------------- training


def _images_to_tensor(images: np.ndarray | torch.Tensor, name: str = "images") -> torch.Tensor:
    """uint8 NHWC renders or [-1, 1] NCHW tensors -> float NCHW in [-1, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise SketchganError(f"{name}: numpy input must be uint8 (N, H, W, 3)")
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise SketchganError(f"{name}: expected (N, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    return images.float()


def _loss(model: WorldEvaluator, x: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy + MSE on the pose code; the rotation term skips rotation-free circles."""
    logits, reg = model(x)
    ce = F.cross_entropy(logits, t["label"])
    pose = F.mse_loss(reg[:, :4], t["reg"][:, :4])
    rot = ((reg[:, 4:] - t["reg"][:, 4:]) ** 2).sum(1)
    rot = (rot * t["rot_mask"]).sum() / t["rot_mask"].sum().clamp(min=1.0)
    return ce + pose + 0.5 * rot


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Mild pixel noise: generated images are not pixel-exact renders."""
    return x + 0.04 * torch.randn(x.shape, generator=gen)


@torch.no_grad()
def _predict_raw(model: WorldEvaluator, x: torch.Tensor, batch: int) -> tuple[torch.Tensor, ...]:
    device = next(model.parameters()).device
    outs = [model(x[i : i + batch].to(device)) for i in range(0, len(x), batch)]
    return torch.cat([o[0].cpu() for o in outs]), torch.cat([o[1].cpu() for o in outs])


def predict_attributes(
    model: WorldEvaluator, images: torch.Tensor | np.ndarray, batch: int = 256
) -> pd.DataFrame:
    """Shape class, pose and class confidence for images in [-1, 1] (N, 3, H, W).

    Images of another size are resized (bilinear, antialiased) to the evaluator's size.
    """
    x = _images_to_tensor(images)
    size = int(model.config["size"])
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    model.eval()
    logits, reg = _predict_raw(model, x, batch)
    return decode_outputs(logits, reg, model.config)


def attribute_errors(pred: pd.DataFrame, truth: pd.DataFrame, circle_aspect: float) -> dict:
    """Held-out accuracy: class accuracy and mean absolute pose errors in world units."""
    truth = truth.reset_index(drop=True)
    out = {"class_acc": float((pred["shape"].to_numpy() == truth["shape"].to_numpy()).mean())}
    for f in ("cx", "cy", "scale", "aspect"):
        out[f"{f}_mae"] = float(np.abs(pred[f] - truth[f]).mean())
    diff = np.mod(pred["rotation"] - truth["rotation"] + ROTATION_PERIOD / 2, ROTATION_PERIOD)
    diff = np.abs(diff - ROTATION_PERIOD / 2)
    aspect = truth["aspect"].to_numpy(float)
    circle = (truth["shape"].to_numpy() == "ellipse") & (
        np.maximum(aspect, 1 / aspect) <= circle_aspect
    )
    visible = ~circle
    out["rotation_mae_deg"] = float(diff[visible].mean()) if visible.any() else float("nan")
    return out


def evaluate_on_renders(
    model: WorldEvaluator,
    n: int,
    seed: int,
    target: world.TargetSpec | None = None,
    tol: float = 0.0,
) -> dict[str, float]:
    """Errors on fresh renders; with a target, also the match rate on true target scenes.

    The target match rate on real renders is the ceiling a perfect generator could reach under
    this evaluator, which is the fair yardstick for generated samples' match rates.
    """
    images, _, attrs = world.render_scenes(n, int(model.config["size"]), seed, target)
    pred = predict_attributes(model, images)
    out = attribute_errors(pred, attrs, model.config["circle_aspect"])
    if target is not None:
        out["match_rate"] = float(world.matches_target(pred, target, tol).mean())
    return out


def train_evaluator(
    *,
    size: int,
    n_train: int,
    iters: int,
    batch: int,
    seed: int,
    device: torch.device | str,
    lr: float,
    width: int,
    n_val: int,
) -> tuple[WorldEvaluator, dict[str, Any]]:
    """Train on ``n_train`` world renders; ``info`` holds held-out accuracy (seed + 1 scenes).
    The settings are the ``evaluator`` section of params.yaml (no second default here)."""
    if n_train < batch or iters < 1 or batch < 2:
        raise SketchganError(
            "evaluator: need n_train >= batch >= 2 and iters >= 1 "
            f"(got n_train {n_train}, batch {batch}, iters {iters})"
        )
    start, cpu_start = time.perf_counter(), time.process_time()
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = WorldEvaluator(_default_config(size, width)).to(device)
    images, _, attrs = world.render_scenes(n_train, size, seed)
    x_all = _images_to_tensor(images)
    t_all = encode_targets(attrs, model.config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=iters, pct_start=0.15)
    model.train()
    meter = loop.Meter(["loss"], dtype=torch.float64)
    final: dict[str, float] = {}  # the latest window's mean loss

    def draw(_step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        idx = torch.randint(0, n_train, (batch,), generator=gen)
        x = _augment(x_all[idx], gen).to(device)
        return x, {k: v[idx].to(device) for k, v in t_all.items()}

    def attribute_phase(data: tuple[torch.Tensor, dict[str, torch.Tensor]]) -> dict[str, float]:
        loss = _loss(model, *data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    loop.TrainingLoop(
        draw,
        [loop.Phase("attributes", 1, attribute_phase)],
        [loop.Periodic(FINAL_LOSS_WINDOW, lambda _step: final.update(meter.take()), True)],
        meter=meter,
        on_nonfinite=lambda step, _bad: SketchganError(
            f"evaluator: non-finite loss at step {step}; lower evaluator.lr"
        ),
    ).run(0, iters)
    model.eval()
    info: dict[str, Any] = {
        "train_seconds": time.perf_counter() - start,
        "train_cpu_seconds": time.process_time() - cpu_start,
        "final_loss": final["loss"],  # the mean over the last window of iterations
        "size": size,
        "n_train": n_train,
        "iters": iters,
        "batch": batch,
        "seed": seed,
    }
    info.update({f"val_{k}": v for k, v in evaluate_on_renders(model, n_val, seed + 1).items()})
    return model, info


def target_match_rate(
    model: WorldEvaluator,
    images: torch.Tensor | np.ndarray,
    target: world.TargetSpec,
    tol: float = 0.0,
) -> dict[str, float]:
    """Share of images whose *predicted* shape and pose match the target (and shape alone)."""
    pred = predict_attributes(model, images)
    return {
        "match_rate": float(world.matches_target(pred, target, tol).mean()),
        "shape_rate": float((pred["shape"] == target.shape).mean()),
        "n": int(len(pred)),
    }


# --------------------------------------------------------------------------- persistence


def save_evaluator(model: WorldEvaluator, path: str | Path) -> None:
    save_config_model(model, path)


def load_evaluator(path: str | Path, device: torch.device | str = "cpu") -> WorldEvaluator:
    """Load a checkpoint written by :func:`save_evaluator` (``weights_only=True``)."""
    return load_config_model(path, WorldEvaluator, "an evaluator", device)
