"""Checkpoint loading, verification, download and registry (sketchgan.checkpoints)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import sys
import threading
import types
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import torch
from conftest import shared_fixtures
from torch import nn

from sketchgan import checkpoints as ck
from sketchgan.errors import SketchganError

FIXTURES = shared_fixtures()
SG_FIXTURE = FIXTURES / "stylegan2_small.pt"
PS_FIXTURE = FIXTURES / "photosketch_small.pt"
SHAPES_FIXTURE = FIXTURES / "reference_state_shapes.json"


class Payload:
    """A custom class: pickling it must be refused by weights_only loading."""

    def __init__(self) -> None:
        self.value = 3


def module_from_state(state: Mapping[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    """A module whose state_dict has exactly these keys and shapes (stands in for the nets)."""
    root = nn.Module()
    for key, tensor in state.items():
        *path, leaf = key.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        value = torch.zeros(tuple(tensor.shape), dtype=tensor.dtype, device=device)
        if value.is_floating_point():
            node.register_parameter(leaf, nn.Parameter(value))
        else:
            node.register_buffer(leaf, value)
    return root


@pytest.fixture(scope="module")
def sg() -> dict:
    if not SG_FIXTURE.is_file():
        pytest.skip("reference fixtures absent")
    return torch.load(SG_FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def ps() -> dict:
    if not PS_FIXTURE.is_file():
        pytest.skip("reference fixtures absent")
    return torch.load(PS_FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def ckpt_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A zip-format checkpoint made here, so download/corruption tests need no fixtures."""
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    gen = torch.Generator().manual_seed(0)
    state = {f"layer{i}.weight": torch.randn(64, 64, generator=gen) for i in range(8)}
    torch.save({"g_ema": state, "config": {"size": 32}}, path)
    return path.read_bytes()


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --------------------------------------------------------------------------- loading


def test_load_fixture_dicts(sg: dict, ps: dict) -> None:  # needs the reference fixtures
    obj = ck.load_checkpoint(SG_FIXTURE)
    state = ck.extract_state(obj, prefer=("g_state",))
    assert state.keys() == sg["g_state"].keys()
    assert all(torch.equal(state[k], sg["g_state"][k]) for k in state)
    assert any(k.startswith("noises.noise_") for k in state)
    ps_state = ck.extract_state(ck.load_checkpoint(PS_FIXTURE))  # default prefer finds "state"
    assert ps_state.keys() == ps["state"].keys()


def test_extract_state_wrappers(sg: dict, ps: dict) -> None:
    g, d, p = sg["g_state"], sg["d_state"], ps["state"]
    shifted = {k: v + 1 for k, v in g.items() if v.is_floating_point()}
    assert ck.extract_state({"g_ema": g, "g": shifted, "d": d}) is not None
    picked = ck.extract_state({"g": shifted, "g_ema": g, "d": d, "latent_avg": torch.zeros(4)})
    assert torch.equal(picked["style.1.weight"], g["style.1.weight"])  # g_ema wins over g
    assert torch.equal(
        ck.extract_state({"g": shifted})["style.1.weight"], shifted["style.1.weight"]
    )
    assert ck.extract_state({"g_ema": g, "d": d}, prefer=("d",)).keys() == d.keys()
    assert ck.extract_state({"d": d}, prefer="d").keys() == d.keys()
    assert ck.extract_state(p).keys() == p.keys()  # PhotoSketch: bare dict
    assert ck.extract_state({"state_dict": p, "epoch": 3}).keys() == p.keys()
    with pytest.raises(SketchganError) as exc:
        ck.extract_state({"d": d, "iteration": 5}, source="x.pt")
    assert_one_line(exc, "x.pt", "'d'", "'iteration'", "g_ema")


def test_ddp_prefix_is_stripped(sg: dict) -> None:
    g = sg["g_state"]
    wrapped = {f"module.{k}": v for k, v in g.items()}
    assert ck.extract_state({"g_ema": wrapped}).keys() == g.keys()
    compiled = {f"_orig_mod.module.{k}": v for k, v in g.items()}
    assert ck.extract_state(compiled).keys() == g.keys()
    partial = {**g, "module.extra": torch.zeros(1)}  # only one key: not a wrapper prefix
    assert "module.extra" in ck.extract_state(partial)


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(SketchganError) as exc:
        ck.load_checkpoint(tmp_path / "nope.pt")
    assert_one_line(exc, "nope.pt", "not found")
    with pytest.raises(SketchganError) as exc:
        ck.load_checkpoint(tmp_path)
    assert_one_line(exc, str(tmp_path), "folder")


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty", "text", "flipped"],
)
def test_corrupt_files_give_one_line_errors(tmp_path: Path, damage: str, ckpt_bytes: bytes) -> None:
    data = ckpt_bytes
    path = tmp_path / f"{damage}.pt"
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("just some text, not a checkpoint\n")
    else:  # a burst of garbage in the middle of the zip
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(4096) + data[middle + 4096 :])
    with pytest.raises(SketchganError) as exc:
        ck.load_checkpoint(path)
    assert_one_line(exc, str(path))


def test_legacy_format_truncated(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(ck.load_checkpoint(path)["w"], torch.ones(3))  # old format still loads
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(SketchganError) as exc:
        ck.load_checkpoint(path)
    assert_one_line(exc, "legacy.pt")


def test_pickled_custom_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"w": torch.ones(1)}, "payload": Payload()}, path)
    with pytest.raises(SketchganError) as exc:
        ck.load_checkpoint(path)
    message = assert_one_line(exc, "evil.pt", "Payload", "weights_only")
    assert len(message) < 300


def test_non_dict_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.ones(2), path)
    with pytest.raises(SketchganError) as exc:
        ck.load_checkpoint(path)
    assert_one_line(exc, "tensor.pt", "Tensor")


# --------------------------------------------------------------------------- verification


def test_load_into_roundtrip(sg: dict, tmp_path: Path) -> None:
    model = module_from_state(sg["g_state"])
    path = tmp_path / "ckpt.pt"
    torch.save({"g_ema": {f"module.{k}": v for k, v in sg["g_state"].items()}}, path)
    assert ck.load_into(model, path) is model
    for key, value in model.state_dict().items():
        assert torch.equal(value, sg["g_state"][key]), key
    d_model = module_from_state(sg["d_state"])
    ck.load_into(d_model, sg, key="d_state")
    assert torch.equal(d_model.state_dict()["convs.0.0.weight"], sg["d_state"]["convs.0.0.weight"])


def test_wrong_size_names_key_and_both_shapes(sg: dict) -> None:
    shapes = json.loads(SHAPES_FIXTURE.read_text())["stylegan2_g_256_cm2"]
    big = module_from_state(
        {k: torch.empty(s, device="meta") for k, s in shapes.items()}, device="meta"
    )
    with pytest.raises(SketchganError) as exc:
        ck.verify_state_dict(sg["g_state"], big, "ckpt.pt")
    message = assert_one_line(exc, "ckpt.pt: '")
    match = re.match(
        r"ckpt\.pt: '([\w.]+)' has shape \(([\d,]*)\), model expects \(([\d,]*)\)", message
    )
    assert match, message
    key, got, want = match.groups()
    assert tuple(int(x) for x in got.split(",") if x) == tuple(sg["g_state"][key].shape)
    assert tuple(int(x) for x in want.split(",") if x) == tuple(shapes[key])
    assert "more keys differ" in message


def test_single_mismatch_is_named_exactly(sg: dict) -> None:
    model = module_from_state(sg["g_state"])
    bad = dict(sg["g_state"])
    bad["convs.3.conv.weight"] = torch.zeros(1, 16, 16, 3, 3)
    expected = tuple(sg["g_state"]["convs.3.conv.weight"].shape)
    with pytest.raises(SketchganError) as exc:
        ck.load_into(model, bad, source="ckpt.pt")
    message = str(exc.value)
    assert message == (
        "ckpt.pt: 'convs.3.conv.weight' has shape (1,16,16,3,3), model expects "
        f"({','.join(map(str, expected))})"
    )


def test_missing_and_unexpected_keys(sg: dict) -> None:
    model = module_from_state(sg["g_state"])
    missing = {k: v for k, v in sg["g_state"].items() if k != "to_rgb1.bias"}
    with pytest.raises(SketchganError) as exc:
        ck.verify_state_dict(missing, model, "a.pt")
    assert_one_line(exc, "a.pt", "missing 'to_rgb1.bias'")
    extra = {**sg["g_state"], "w_shift": torch.zeros(64)}
    with pytest.raises(SketchganError) as exc:
        ck.verify_state_dict(extra, model, "b.pt")
    assert_one_line(exc, "b.pt", "unexpected key 'w_shift'", "(64,)")


def test_old_batchnorm_without_step_counter_loads(ps: dict) -> None:
    model = module_from_state(ps["state"])
    old = {k: v for k, v in ps["state"].items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(ps["state"])
    ck.load_into(model, old)
    assert torch.equal(model.state_dict()["model.1.weight"], ps["state"]["model.1.weight"])


# --------------------------------------------------------------------------- fetch


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A loopback HTTP server on a free port, serving a temporary folder."""
    root = tmp_path / "served"
    root.mkdir()
    handler = type("Handler", (_Handler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_checks_sha_and_reuses_cache(http_root, tmp_path: Path, ckpt_bytes: bytes) -> None:
    base, root, requests = http_root
    data = ckpt_bytes
    (root / "model.pt").write_bytes(data)
    cache = tmp_path / "cache"
    path = ck.fetch(f"{base}/model.pt", cache, sha256=_sha(data))
    assert path.name == "model.pt" and path.parent.parent == cache and path.read_bytes() == data
    assert requests == ["/model.pt"]
    again = ck.fetch(f"{base}/model.pt", cache, sha256=_sha(data).upper())
    assert again == path and requests == ["/model.pt"]  # no second download
    assert ck.fetch(f"{base}/model.pt", cache) == path and len(requests) == 1
    assert ck.load_checkpoint(path)["config"]["size"] == 32


def test_fetch_mismatch_leaves_no_file(http_root, tmp_path: Path) -> None:
    base, root, _ = http_root
    (root / "model.pt").write_bytes(b"tampered bytes")
    cache = tmp_path / "cache"
    wanted = _sha(b"the real thing")
    url = f"{base}/model.pt"
    with pytest.raises(SketchganError) as exc:
        ck.fetch(url, cache, sha256=wanted)
    assert_one_line(exc, url, wanted, _sha(b"tampered bytes"))
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_fetch_replaces_stale_cache_and_reports_http_errors(http_root, tmp_path: Path) -> None:
    base, root, requests = http_root
    (root / "m.pt").write_bytes(b"new")
    cache = tmp_path / "cache"
    stale = ck._cache_target(f"{base}/m.pt", cache, None)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old, corrupt")
    path = ck.fetch(f"{base}/m.pt", cache, sha256=_sha(b"new"))
    assert path.read_bytes() == b"new" and requests == ["/m.pt"]
    with pytest.raises(SketchganError) as exc:
        ck.fetch(f"{base}/missing.pt", cache)
    assert_one_line(exc, "missing.pt", "404")
    with pytest.raises(SketchganError):
        ck.fetch(f"{base}/m.pt", cache, sha256="not-a-hash")


def test_fetch_keys_the_cache_by_url_and_checks_unpinned_entries(http_root, tmp_path) -> None:
    base, root, requests = http_root
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "a" / "model.pt").write_bytes(b"from a")
    (root / "b" / "model.pt").write_bytes(b"from b")
    cache = tmp_path / "cache"
    first = ck.fetch(f"{base}/a/model.pt", cache)
    second = ck.fetch(f"{base}/b/model.pt", cache)  # same file name, another URL
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"from a", b"from b")
    # an unpinned entry is checked against the hash recorded at download: a damaged one is
    # fetched again instead of loaded
    first.write_bytes(b"bit rot")
    assert ck.fetch(f"{base}/a/model.pt", cache).read_bytes() == b"from a"
    assert requests.count("/a/model.pt") == 2
    # a URL can pin its hash: url#sha256=<hex>
    pinned = f"{base}/a/model.pt#sha256={_sha(b'something else')}"
    with pytest.raises(SketchganError) as exc:
        ck.resolve_checkpoint(pinned, tmp_path / "other")
    assert_one_line(exc, "sha256 mismatch")


def test_fetch_names_that_climb_out_of_the_cache_stay_inside(http_root, tmp_path) -> None:
    base, root, _ = http_root
    (root / "x").write_bytes(b"x")
    cache = tmp_path / "deep" / "cache"
    for url in (f"{base}/%2e%2e", f"{base}/a/%2E%2E", f"{base}/..%2f..%2fx"):
        target = ck._cache_target(url, cache, None)
        assert target.resolve().is_relative_to(cache.resolve()), url
        assert target.name not in ("..", ".", "")
    assert ck._download_name(f"{base}/model.pt", "../../evil.pt") == "evil.pt"


def test_fetch_local_paths(tmp_path: Path) -> None:
    data = b"weights"
    local = tmp_path / "w.pt"
    local.write_bytes(data)
    assert ck.fetch(str(local), tmp_path / "c", sha256=_sha(data)) == local
    assert ck.fetch(local.as_uri(), tmp_path / "c") == local
    with pytest.raises(SketchganError) as exc:
        ck.fetch(local.as_uri(), tmp_path / "c", sha256=_sha(b"other"))
    assert_one_line(exc, _sha(data), _sha(b"other"))
    assert local.exists()  # a user's own file is never deleted
    with pytest.raises(SketchganError):
        ck.fetch(str(tmp_path / "absent.pt"), tmp_path / "c")


# --------------------------------------------------------------------------- registry


def test_registry_entries_are_well_formed() -> None:
    entries = {
        k: v for k, v in ck.known_checkpoints().items() if not v["url"].startswith("package:")
    }  # published weights; the packaged zoo is tests/test_zoo.py's
    kinds = {e["kind"] for e in entries.values()}
    assert kinds == {"stylegan2_generator", "stylegan2_discriminator", "photosketch"}
    for name, entry in entries.items():
        assert entry["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
        assert entry["url"].startswith("https://"), name
        if entry["kind"] == "stylegan2_generator":
            assert entry["config"]["style_dim"] == 512 and entry["config"]["n_mlp"] == 8
            assert entry["config"]["channel_multiplier"] == 2
    sizes = {e["config"]["size"] for e in entries.values() if "size" in e["config"]}
    assert sizes == {256, 1024}
    assert ck.known_checkpoint("gansketching-photosketch")["config"]["ngf"] == 64


def test_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SketchganError) as exc:
        ck.known_checkpoint("stylegan2-dog")
    assert_one_line(exc, "stylegan2-dog", "gansketching-stylegan2-church")
    with pytest.raises(SketchganError) as exc:
        ck.resolve_checkpoint("stylegan2-dog", tmp_path)
    assert_one_line(exc, "gansketching-stylegan2-cat")
    with pytest.raises(SketchganError) as exc:
        ck.resolve_checkpoint("photosketch-latest-net-g", tmp_path)
    assert_one_line(exc, "drive.google.com", "manually")


def test_resolve_registry_entry_from_zip(
    http_root, tmp_path: Path, monkeypatch, ckpt_bytes: bytes
) -> None:
    base, root, requests = http_root
    data = ckpt_bytes
    with zipfile.ZipFile(root / "bundle.zip", "w") as archive:
        archive.writestr("pretrained/photosketch.pth", data)
        archive.writestr("pretrained/other.txt", "x")
    entry = {
        "kind": "stylegan2_generator",
        "url": f"{base}/bundle.zip",
        "archive_member": "photosketch.pth",
        "archive_sha256": None,
        "sha256": _sha(data),
        "wrapper_key": None,
        "config": {"size": 32},
    }
    monkeypatch.setattr(ck, "known_checkpoints", lambda: {"tiny-sketch": entry})
    path = ck.resolve_checkpoint("tiny-sketch", tmp_path / "cache")
    assert path.read_bytes() == data and path.name == "photosketch.pth"
    assert ck.resolve_checkpoint("tiny-sketch", tmp_path / "cache") == path
    assert requests == ["/bundle.zip"]
    assert ck.resolve_checkpoint(str(path), tmp_path / "other") == path
    entry["sha256"] = _sha(b"different")
    path.unlink()
    with pytest.raises(SketchganError) as exc:
        ck.resolve_checkpoint("tiny-sketch", tmp_path / "cache")
    assert_one_line(exc, "sha256 mismatch")
    assert not path.exists()


# --------------------------------------------------------------------------- project layouts


@pytest.fixture()
def fake_networks(sg: dict, ps: dict, monkeypatch) -> dict:
    """Stand-in model modules so these tests do not depend on the real network code."""
    calls: dict = {}

    def factory(name: str, state: Mapping[str, torch.Tensor]):
        def build(**cfg):
            calls[name] = cfg
            return module_from_state(state)

        return build

    sg_mod = types.ModuleType("sketchgan.models.stylegan2")
    sg_mod.Generator = factory("Generator", sg["g_state"])
    sg_mod.Discriminator = factory("Discriminator", sg["d_state"])
    ps_mod = types.ModuleType("sketchgan.models.photosketch")
    ps_mod.ResnetGenerator = factory("ResnetGenerator", ps["state"])
    monkeypatch.setitem(sys.modules, "sketchgan.models.stylegan2", sg_mod)
    monkeypatch.setitem(sys.modules, "sketchgan.models.photosketch", ps_mod)
    return calls


def test_generator_checkpoint_roundtrip(sg: dict, fake_networks: dict, tmp_path: Path) -> None:
    g_ema = module_from_state(sg["g_state"])
    g_ema.load_state_dict(sg["g_state"])
    d = module_from_state(sg["d_state"])
    d.load_state_dict(sg["d_state"])
    path = tmp_path / "models" / "generator.pt"
    ck.save_generator_checkpoint(path, g_ema, g=sg["g_state"], d=d, config=sg["config"])
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g_ema", "g", "d", "config"} and raw["config"] == sg["config"]
    model, config = ck.load_generator(path, "cpu")
    assert config == sg["config"] and fake_networks["Generator"] == sg["config"]
    assert torch.equal(
        model.state_dict()["convs.1.conv.weight"], sg["g_state"]["convs.1.conv.weight"]
    )
    disc, _ = ck.load_discriminator(path)
    assert fake_networks["Discriminator"] == {
        "size": 32,
        "channel_multiplier": 2,
        "channel_max": 32,
    }
    assert torch.equal(
        disc.state_dict()["final_linear.1.bias"], sg["d_state"]["final_linear.1.bias"]
    )


def test_generator_config_errors(sg: dict, fake_networks: dict, tmp_path: Path) -> None:
    with pytest.raises(SketchganError) as exc:
        ck.save_generator_checkpoint(tmp_path / "g.pt", sg["g_state"], config={"size": 32})
    assert_one_line(exc, "g.pt", "style_dim")
    assert not (tmp_path / "g.pt").exists()
    bare = tmp_path / "netG.pth"
    torch.save(sg["g_state"], bare)
    with pytest.raises(SketchganError) as exc:
        ck.load_generator(bare)
    assert_one_line(exc, "netG.pth", "config")
    with pytest.raises(SketchganError) as exc:
        ck.load_generator(bare, config={**sg["config"], "size": 0})
    assert_one_line(exc, "netG.pth", "'size'")
    model, config = ck.load_generator(bare, config=sg["config"])
    assert config == sg["config"]
    no_cap = {k: v for k, v in sg["config"].items() if k != "channel_max"}
    _, config = ck.load_generator(bare, config=no_cap)  # files from before channel_max existed
    assert config["channel_max"] == 512 and fake_networks["Generator"]["channel_max"] == 512


def test_sketch_checkpoint_roundtrip(ps: dict, fake_networks: dict, tmp_path: Path) -> None:
    net = module_from_state(ps["state"])
    net.load_state_dict(ps["state"])
    path = tmp_path / "photosketch.pt"
    ck.save_sketch_checkpoint(path, net, config=ps["config"])
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state", "config"}
    model, config = ck.load_sketch_net(path)
    assert config == ps["config"] and fake_networks["ResnetGenerator"] == ps["config"]
    assert torch.equal(
        model.state_dict()["model.2.running_mean"], ps["state"]["model.2.running_mean"]
    )


# --------------------------------------------------------------------------- real networks


def test_real_networks_accept_reference_state_dicts(sg: dict, ps: dict) -> None:
    stylegan2 = pytest.importorskip("sketchgan.models.stylegan2")
    generator = stylegan2.Generator(**sg["config"])
    ck.load_into(generator, sg, key="g_state", source=str(SG_FIXTURE))
    disc_cfg = {k: sg["config"][k] for k in ck.DISCRIMINATOR_CONFIG_KEYS}
    ck.load_into(stylegan2.Discriminator(**disc_cfg), sg, key="d_state")
    wrong = stylegan2.Generator(**{**sg["config"], "channel_max": 64})
    with pytest.raises(SketchganError) as exc:
        ck.load_into(wrong, sg, key="g_state", source="small.pt")
    assert_one_line(exc, "small.pt: '", "model expects")
    photosketch = pytest.importorskip("sketchgan.models.photosketch")
    ck.load_into(photosketch.ResnetGenerator(**ps["config"]), ps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_modules_save_as_cpu_and_load_onto_device(
    sg: dict, fake_networks: dict, tmp_path: Path
) -> None:
    g_ema = module_from_state(sg["g_state"]).cuda()
    path = tmp_path / "g.pt"
    ck.save_generator_checkpoint(path, g_ema, config=sg["config"])
    raw = torch.load(path, weights_only=True)  # no map_location: must not need CUDA
    assert all(t.device.type == "cpu" for t in raw["g_ema"].values())
    model, _ = ck.load_generator(path, "cuda")
    assert next(model.parameters()).device.type == "cuda"
