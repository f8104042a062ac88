"""Checkpoint loading, verification, download and the registry of known pretrained weights.

Checkpoints come from strangers (the GANSketching release, PhotoSketch's Google Drive, users'
own StyleGAN2 runs), so everything here loads with ``weights_only=True`` and turns every failure
into a single line that names the file, the key and both shapes: a user who points the pipeline at
a 1024 px FFHQ model with a 256 px config must learn that from one line, not from a traceback
inside ``load_state_dict``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import logging
import os
import pickle
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from sketchgan.errors import SketchganError
from sketchgan.io import atomic_path, save_torch, sha256_file, write_text
from sketchgan.models.stylegan2 import check_state_dict

DEFAULT_PREFER = ("g_ema", "g", "state", "state_dict")
# Wrapper prefixes added by DistributedDataParallel / DataParallel and by torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Keys a checkpoint may lack while the model keeps its own value: BatchNorm's step counter was
# added in PyTorch 0.4.1, after PhotoSketch's weights were saved; it has no effect on outputs.
OPTIONAL_KEY_SUFFIXES = ("num_batches_tracked",)

GENERATOR_CONFIG_KEYS = ("size", "style_dim", "n_mlp", "channel_multiplier", "channel_max")
DISCRIMINATOR_CONFIG_KEYS = ("size", "channel_multiplier", "channel_max")
SKETCH_CONFIG_KEYS = ("input_nc", "output_nc", "ngf", "n_blocks")
# channel_max was introduced by this project; checkpoints without it use the standard table.
_CONFIG_DEFAULTS = {"channel_max": 512}

_DOWNLOAD_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REGISTRY_FILE = "known_checkpoints.yaml"
# The embedded model zoo: weights shipped inside the package, one registry file beside them.
_ZOO_REGISTRY_FILE = "zoo/zoo.yaml"
#: URL scheme of a file shipped in the package (``package:zoo/<file>``), resolved in place.
PACKAGE_SCHEME = "package:"
_REGISTRY_REQUIRED = ("kind", "url", "sha256", "wrapper_key", "config")

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- loading


def load_torch_file(path: str | os.PathLike, check_crc: bool = True) -> Any:
    """The project's only ``torch.load``: ``weights_only=True`` (no unpickling of code), CRC
    checked, every failure one line naming the file.

    ``torch.load`` does not verify the CRC-32 that ``torch.save`` records per tensor, so bytes
    damaged inside a tensor load silently as wrong weights; ``check_crc`` reads the file once
    more to catch that (about 1 s per GB).
    """
    path = Path(path)
    if not path.exists():
        raise SketchganError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise SketchganError(f"{path}: is a folder, expected a checkpoint file")
    if check_crc:
        _check_zip_crc(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, OSError...
        raise SketchganError(f"{path}: {_describe_load_error(exc)}") from exc


def load_checkpoint(path: str | os.PathLike, check_crc: bool = True) -> dict[str, Any]:
    """``load_torch_file`` for files holding a dict (every checkpoint of this project)."""
    obj = load_torch_file(path, check_crc)
    if not isinstance(obj, Mapping):
        raise SketchganError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return obj


def _check_zip_crc(path: Path) -> None:
    """Verify recorded CRC-32s of a zip-format checkpoint (legacy files have none to check)."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:  # saved with torch.serialization.set_crc32_options(False)
                    continue
                with archive.open(info) as member:
                    while member.read(_DOWNLOAD_CHUNK):
                        pass
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SketchganError(
            f"{path}: corrupt checkpoint ({exc}); re-download or re-save it"
        ) from exc


def _describe_load_error(exc: BaseException) -> str:
    """Condense torch's multi-paragraph load errors into the part a user can act on."""
    text = str(exc)
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
        return (
            f"holds a pickled Python object ({unsupported.group(1)}) that weights_only loading "
            "refuses; re-save only the state dict (tensors, numbers, strings, dicts)"
        )
    if "Weights only load failed" in text or isinstance(exc, EOFError):
        return "not a PyTorch checkpoint, or corrupt/truncated (cannot be unpickled)"
    if "zip archive" in text or "unexpected EOF" in text or "corrupt" in text.lower():
        return "corrupt or truncated checkpoint (re-download or re-save it)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"cannot load checkpoint ({exc.__class__.__name__}: {first[:200]})"


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _strip_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a DDP/compile prefix only when every key carries it (a lone key is left alone)."""
    state = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def extract_state(
    obj: Mapping[str, Any],
    prefer: Iterable[str] = DEFAULT_PREFER,
    source: str = "checkpoint",
) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint, whichever wrapper its author used.

    A bare state dict (PhotoSketch, GANSketching's netG.pth) is returned as is; otherwise the
    first key of ``prefer`` that holds one (``g_ema`` before ``g``: the averaged generator is
    the one people sample from).
    """
    prefer = (prefer,) if isinstance(prefer, str) else tuple(prefer)
    if _is_state_dict(obj):
        return _strip_wrapper_prefix(obj)
    if not isinstance(obj, Mapping):
        raise SketchganError(f"{source}: expected a dict, got {type(obj).__name__}")
    for key in prefer:
        if key in obj and _is_state_dict(obj[key]):
            return _strip_wrapper_prefix(obj[key])
    found = ", ".join(repr(k) for k in list(obj)[:12])
    raise SketchganError(f"{source}: no state dict under {list(prefer)}; top-level keys: {found}")


# --------------------------------------------------------------------------- verification


def _is_optional(key: str) -> bool:
    return key.endswith(OPTIONAL_KEY_SUFFIXES)


def verify_state_dict(
    state: Mapping[str, torch.Tensor], model: nn.Module, source: str = "checkpoint"
) -> None:
    """Check keys and shapes against ``model`` before loading; one line naming ``source``."""
    check_state_dict(model, state, source, strict=True, optional=_is_optional)


def _fill_optional(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Give keys listed in OPTIONAL_KEY_SUFFIXES the model's own value so strict loading works."""
    filled = dict(state)
    for key, value in model.state_dict().items():
        if key not in filled and _is_optional(key):
            filled[key] = value.detach().clone()
    return filled


def load_into(
    model: nn.Module,
    path_or_state: str | os.PathLike | Mapping[str, Any],
    key: str | Iterable[str] | None = None,
    source: str | None = None,
) -> nn.Module:
    """Verify, then strictly load a checkpoint (file or already-loaded dict) into ``model``."""
    if isinstance(path_or_state, (str, os.PathLike)):
        source = source or str(path_or_state)
        obj = load_checkpoint(path_or_state)
    else:
        source = source or "state dict"
        obj = path_or_state
    prefer = DEFAULT_PREFER if key is None else key
    state = extract_state(obj, prefer=prefer, source=source)
    adopt = getattr(model, "adopt_state_layout", None)
    if adopt is not None:  # e.g. a generator growing the w_shift slot its file carries
        adopt(state)
    state = _fill_optional(state, model)
    verify_state_dict(state, model, source)
    model.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------- download


def _is_url(value: str) -> bool:
    return urllib.parse.urlparse(value).scheme in ("http", "https", "file")


def _local_path(url_or_path: str) -> Path | None:
    """The filesystem path of a plain path or ``file://`` URL; None for http(s)."""
    parsed = urllib.parse.urlparse(url_or_path)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    return Path(url_or_path)


def _check_sha_format(sha256: str | None, where: str) -> str | None:
    if sha256 is None:
        return None
    sha = sha256.strip().lower()
    if not _SHA256_RE.match(sha):
        raise SketchganError(f"{where}: sha256 must be 64 hex digits, got {sha256!r}")
    return sha


def _safe_name(name: str) -> str:
    """A file name that stays inside its folder (``%2e%2e`` decodes to ``..``)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\0", "")
    return "download" if name in ("", ".", "..") else name


def _download_name(url: str, filename: str | None) -> str:
    if filename:
        return _safe_name(filename)
    return _safe_name(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def _cache_target(url: str, cache_dir: Path, filename: str | None) -> Path:
    """Cache entries are keyed by the whole URL (two servers' ``model.pt`` never collide)."""
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir / key / _download_name(url, filename)


def split_pinned_url(value: str) -> tuple[str, str | None]:
    """``https://host/model.pt#sha256=<64 hex>``: the URL and the hash it must have."""
    url, _, fragment = value.partition("#")
    if fragment.startswith("sha256="):
        return url, fragment[len("sha256=") :]
    return value, None


def _stream_download(url: str, dest: Path) -> str:
    """Stream ``url`` into ``dest``, returning its sha256; short reads are errors."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "sketchgan"})
    try:
        with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            expected_len = response.headers.get("Content-Length")
            received = 0
            with open(dest, "wb") as f:
                while block := response.read(_DOWNLOAD_CHUNK):
                    digest.update(block)
                    f.write(block)
                    received += len(block)
    except urllib.error.HTTPError as exc:
        raise SketchganError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SketchganError(f"{url}: download failed ({reason})") from exc
    if expected_len is not None and received != int(expected_len):
        raise SketchganError(f"{url}: download truncated ({received} of {expected_len} bytes)")
    return digest.hexdigest()


def _mismatch(where: str, expected: str, actual: str) -> SketchganError:
    return SketchganError(f"{where}: sha256 mismatch, expected {expected}, got {actual}")


def fetch(
    url: str,
    cache_dir: str | os.PathLike,
    sha256: str | None = None,
    filename: str | None = None,
) -> Path:
    """Download ``url`` into ``cache_dir`` once, checking its SHA-256 while it streams.

    The file only appears under its final name after the hash matched (atomic rename), so an
    interrupted or tampered download never masquerades as a cached checkpoint. A cached file is
    reused when its hash matches: the pinned one, else the one recorded beside it at download
    (``<name>.sha256``), so a damaged cache entry is fetched again rather than loaded. Plain
    paths and ``file://`` URLs are returned in place after the same check.
    """
    sha = _check_sha_format(sha256, url)
    local = _local_path(url)
    if local is not None:
        return _check_local(local, url, sha)
    target = _cache_target(url, Path(cache_dir), filename)
    recorded = target.with_name(target.name + ".sha256")
    if target.is_file():
        want = sha or (recorded.read_text().strip() if recorded.is_file() else None)
        if want is not None and sha256_file(target) == want:
            return target
        target.unlink()  # stale, corrupt or unverifiable cache entry: fetch again
    with atomic_path(target) as tmp:
        actual = _stream_download(url, tmp)
        if sha is not None and actual != sha:
            raise _mismatch(url, sha, actual)
    write_text(recorded, actual + "\n")
    if sha is None:  # tell the user what to pin; the registry never guesses hashes
        _log.warning(
            "%s is not pinned: downloaded with sha256 %s; pin it with %s#sha256=%s",
            url,
            actual,
            url,
            actual,
        )
    return target


def _check_local(path: Path, where: str, sha: str | None) -> Path:
    if not path.is_file():
        raise SketchganError(f"{where}: file not found")
    if sha is not None:
        actual = sha256_file(path)
        if actual != sha:
            raise _mismatch(where, sha, actual)
    return path


def _find_member(archive: zipfile.ZipFile, member: str, where: str) -> str:
    """Exact member name, else one ending in ``/member`` (zips often add a top folder)."""
    names = archive.namelist()
    if member in names:
        return member
    matches = [n for n in names if n.endswith("/" + member)]
    if len(matches) == 1:
        return matches[0]
    raise SketchganError(f"{where}: archive has no single member '{member}'")


def extract_member(
    archive_path: str | os.PathLike,
    member: str,
    dest_dir: str | os.PathLike,
    sha256: str | None = None,
) -> Path:
    """Unpack one file of a zip into ``dest_dir`` atomically (reused when already there)."""
    archive_path = Path(archive_path)
    sha = _check_sha_format(sha256, f"{archive_path}:{member}")
    target = Path(dest_dir) / member
    if target.is_file() and (sha is None or sha256_file(target) == sha):
        return target
    try:
        with zipfile.ZipFile(archive_path) as archive:
            name = _find_member(archive, member, str(archive_path))
            with atomic_path(target) as tmp, archive.open(name) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, _DOWNLOAD_CHUNK)
                dst.close()
                if sha is not None and (actual := sha256_file(tmp)) != sha:
                    raise _mismatch(f"{archive_path}:{member}", sha, actual)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SketchganError(f"{archive_path}: not a readable zip archive ({exc})") from exc
    return target


# --------------------------------------------------------------------------- registry


def _read_registry(resource: str, required: bool) -> dict[str, dict[str, Any]]:
    ref = importlib.resources.files("sketchgan").joinpath(resource)
    if not ref.is_file():
        if required:
            raise SketchganError(f"{resource}: registry file missing from the installed package")
        return {}
    data = yaml.safe_load(ref.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), dict):
        raise SketchganError(f"{resource}: expected a top-level 'checkpoints' mapping")
    return data["checkpoints"]


def known_checkpoints() -> dict[str, dict[str, Any]]:
    """All registry entries: published weights (``known_checkpoints.yaml``) and the embedded
    zoo shipped in the package (``zoo/zoo.yaml``), each checked for shape."""
    entries = dict(_read_registry(_REGISTRY_FILE, required=True))
    for name, entry in _read_registry(_ZOO_REGISTRY_FILE, required=False).items():
        if name in entries:
            raise SketchganError(f"{_ZOO_REGISTRY_FILE}: '{name}' is also in {_REGISTRY_FILE}")
        entries[name] = entry
    for name, entry in entries.items():
        _validate_entry(name, entry)
    return entries


def _validate_entry(name: str, entry: Any) -> None:
    where = f"{_REGISTRY_FILE}: '{name}'"
    if not isinstance(entry, dict):
        raise SketchganError(f"{where} must be a mapping")
    for field in _REGISTRY_REQUIRED:
        if field not in entry:
            raise SketchganError(f"{where} lacks '{field}'")
    _check_sha_format(entry["sha256"], where)
    _check_sha_format(entry.get("archive_sha256"), where)


def known_checkpoint(name: str) -> dict[str, Any]:
    """One registry entry (a copy, with its ``name``); unknown names list the known ones."""
    entries = known_checkpoints()
    if name not in entries:
        raise SketchganError(
            f"checkpoint '{name}' is not known; known: {', '.join(sorted(entries))}"
        )
    return {"name": name, **copy.deepcopy(entries[name])}


def resolve_checkpoint(name_or_path_or_url: str, cache_dir: str | os.PathLike) -> Path:
    """A local file for a path, a URL or a registry name (downloading into ``cache_dir``)."""
    value = str(name_or_path_or_url)
    if Path(value).is_file():
        return Path(value)
    if _is_url(value):
        url, sha = split_pinned_url(value)
        return fetch(url, cache_dir, sha256=sha)
    entries = known_checkpoints()
    if value not in entries:
        raise SketchganError(
            f"checkpoint '{value}': not an existing file, a URL or a known name "
            f"(known: {', '.join(sorted(entries))})"
        )
    return _resolve_entry(known_checkpoint(value), Path(cache_dir))


def packaged_file(relative: str) -> Path:
    """Filesystem path of a file shipped inside the installed package (the model zoo)."""
    return Path(str(importlib.resources.files("sketchgan").joinpath(relative)))


def _resolve_packaged(entry: dict[str, Any]) -> Path:
    """A zoo file, in place, after its sha256 matched the pin: a damaged install is one line."""
    relative = entry["url"][len(PACKAGE_SCHEME) :]
    path = packaged_file(relative)
    where = f"checkpoint '{entry['name']}' (sketchgan/{relative})"
    if not path.is_file():
        raise SketchganError(f"{where}: file missing from the installed package; reinstall it")
    if entry["sha256"] is None:
        raise SketchganError(f"{where}: the zoo registry pins no sha256")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise SketchganError(
            f"{where}: sha256 {actual[:12]}... does not match the pinned "
            f"{entry['sha256'][:12]}...; the file is damaged or was replaced (reinstall sketchgan)"
        )
    return path


def _resolve_entry(entry: dict[str, Any], cache_dir: Path) -> Path:
    if str(entry["url"]).startswith(PACKAGE_SCHEME):
        return _resolve_packaged(entry)
    if entry.get("download") == "manual":
        member = entry.get("archive_member")
        then = f"unzip it and pass the path of {member}" if member else "pass its local path"
        raise SketchganError(
            f"checkpoint '{entry['name']}' must be downloaded manually from {entry['url']}; {then}"
        )
    member = entry.get("archive_member")
    if member is None:
        return fetch(entry["url"], cache_dir, sha256=entry["sha256"])
    archive = fetch(entry["url"], cache_dir, sha256=entry.get("archive_sha256"))
    return extract_member(archive, member, cache_dir / archive.stem, sha256=entry["sha256"])


# --------------------------------------------------------------------------- project layouts


def _to_state(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = (
        module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    )
    return {k: v.detach().cpu() for k, v in state.items()}


def _check_config(
    config: Mapping[str, Any] | None, keys: tuple[str, ...], source: str
) -> dict[str, int]:
    """Architecture config as plain ints, so it stays loadable with weights_only=True."""
    if not isinstance(config, Mapping):
        raise SketchganError(f"{source}: no architecture 'config' (needs {', '.join(keys)})")
    merged = {**{k: v for k, v in _CONFIG_DEFAULTS.items() if k in keys}, **dict(config)}
    out = {}
    for key in keys:
        value = merged.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SketchganError(f"{source}: config '{key}' must be a positive int, got {value!r}")
        out[key] = value
    return out


def save_generator_checkpoint(
    path: str | os.PathLike,
    g_ema: nn.Module | Mapping[str, torch.Tensor],
    g: nn.Module | Mapping[str, torch.Tensor] | None = None,
    d: nn.Module | Mapping[str, torch.Tensor] | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"g_ema", "g", "d", "config"}`` atomically (the layout of generator.pt files).

    ``extra`` entries (e.g. the iteration) must be plain data so the file stays loadable with
    ``weights_only=True``.
    """
    payload: dict[str, Any] = {
        "g_ema": _to_state(g_ema),
        "config": _check_config(config, GENERATOR_CONFIG_KEYS, str(path)),
    }
    if g is not None:
        payload["g"] = _to_state(g)
    if d is not None:
        payload["d"] = _to_state(d)
    reserved = set(payload) | {"g", "d"}
    for key, value in (extra or {}).items():
        if key in reserved:
            raise SketchganError(f"{path}: extra key '{key}' clashes with a checkpoint field")
        payload[key] = value
    save_torch(payload, path)


def save_sketch_checkpoint(
    path: str | os.PathLike,
    net: nn.Module | Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | None = None,
) -> None:
    """Write ``{"state", "config"}`` atomically (the layout of photosketch.pt)."""
    payload = {
        "state": _to_state(net),
        "config": _check_config(config, SKETCH_CONFIG_KEYS, str(path)),
    }
    save_torch(payload, path)


def _load_network(
    path: str | os.PathLike,
    device: str | torch.device,
    keys: tuple[str, ...],
    build: Callable[[dict[str, int]], nn.Module],
    wrapper_key: str | Iterable[str],
    config: Mapping[str, Any] | None,
) -> tuple[nn.Module, dict[str, int]]:
    obj = load_checkpoint(path)
    cfg = _check_config(config if config is not None else obj.get("config"), keys, str(path))
    model = build(cfg)
    load_into(model, obj, key=wrapper_key, source=str(path))
    return model.to(device), cfg


def save_config_model(model: nn.Module, path: str | os.PathLike) -> None:
    """A small net that carries its architecture in ``model.config`` (world evaluator, SBIR):
    state dict plus config only, so loading never unpickles code."""
    save_torch({"state": model.state_dict(), "config": dict(model.config)}, path)


def load_config_model(
    path: str | os.PathLike,
    build: Callable[[dict[str, Any]], nn.Module],
    what: str,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Load what :func:`save_config_model` wrote: ``build(config)`` then a strict state load;
    a missing or foreign file is one line naming it and ``what`` it should have been ("an
    evaluator")."""
    path = Path(path)
    if not path.is_file():
        raise SketchganError(f"{path}: {what.split(' ', 1)[-1]} checkpoint not found")
    try:
        ckpt = load_checkpoint(path)
        model = build(dict(ckpt["config"]))
        model.load_state_dict(ckpt["state"])
    except (KeyError, TypeError, RuntimeError, OSError, pickle.UnpicklingError) as exc:
        raise SketchganError(f"{path}: not {what} checkpoint ({type(exc).__name__})") from exc
    return model.to(device).eval()


def _build_generator(cfg: dict[str, int]) -> nn.Module:
    from sketchgan.models.stylegan2 import Generator  # lazy: keeps this module model-agnostic

    return Generator(**cfg)


def _build_discriminator(cfg: dict[str, int]) -> nn.Module:
    from sketchgan.models.stylegan2 import Discriminator

    return Discriminator(**cfg)


def _build_sketch_net(cfg: dict[str, int]) -> nn.Module:
    from sketchgan.models.photosketch import ResnetGenerator

    return ResnetGenerator(**cfg)


def load_generator(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    key: str | tuple[str, ...] = "g_ema",
    config: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, int]]:
    """Build a Generator from the file's config (or ``config`` for bare/foreign files) and load it.

    ``key`` picks the weights (``g_ema`` by default, ``g`` for the raw training generator); a
    bare state dict (GANSketching's netG.pth) is accepted with an explicit ``config``.
    """
    gen, cfg = _load_network(path, device, GENERATOR_CONFIG_KEYS, _build_generator, key, config)
    keys = (key,) if isinstance(key, str) else tuple(key)
    legacy = load_checkpoint(path).get("w_shift") if {"g_ema", "g"} & set(keys) else None
    if torch.is_tensor(legacy) and gen.w_shift() is None:
        # files of earlier versions kept the w_shift vector as a top-level entry
        gen.add_w_shift(legacy.to(device))
    return gen, cfg


def load_finetuned_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> nn.Module:
    """A pretrained or fine-tuned generator (g_ema) in eval mode, ready to sample.

    A w_shift fine-tune carries its vector in the state dict (``style.<n_mlp + 1>.w_shift``,
    the reference's layout) and the generator grows the slot for it, so callers use it
    exactly like a pretrained one. MLflow's state-dict artifacts (``{"state", "config"}``)
    load too.
    """
    return load_generator(path, device, key=("g_ema", "state"))[0].eval()


def load_discriminator(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    key: str = "d",
    config: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, int]]:
    """The discriminator of a generator checkpoint (or a bare netD.pth with ``config``)."""
    return _load_network(path, device, DISCRIMINATOR_CONFIG_KEYS, _build_discriminator, key, config)


def load_sketch_net(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    config: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, int]]:
    """The PhotoSketch ResnetGenerator of a ``{"state", "config"}`` file or a bare state dict."""
    return _load_network(
        path, device, SKETCH_CONFIG_KEYS, _build_sketch_net, ("state", "state_dict"), config
    )
