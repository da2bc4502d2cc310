"""``videoreid visualize`` on tiny runs of every method, and the report as a browser shows it.

One small synthetic MARS-layout dataset (with keypoints and a DIS flow cache) serves every
run; each run trains two steps, which is enough for pictures (not for accuracy).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

H, W, T = 128, 64, 4
TINY = {"backbone": "resnet_tiny"}
# method → (model.args, modalities, maps its paper describes and the model must return)
METHODS = {
    "stan": ({**TINY, "num_frames": T}, [], {"spatial", "temporal"}),
    "cmmanet": ({**TINY, "hidden": 8}, [], {"spatial/mam1", "spatial/mam2"}),
    "rgsa_rgtr": ({**TINY, "r2": 8, "seq_len": T}, [], {"spatial", "temporal_relation"}),
    "man": ({**TINY, "embed_hidden": 16}, ["flow"], {"mutual", "temporal/app", "temporal/flow"}),
    "alignnet": ({**TINY, "tap_hidden": 8}, ["pose"], {"parts", "tap/appearance", "tap/parts"}),
    "gated_attention": (TINY, ["flow"], {"gate"}),
    "baseline": ({**TINY, "aggregation": "attention"}, [], {"temporal"}),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from videoreid.data.synthetic import generate
    from videoreid.modalities.flow import compute_dataset_flows

    root = tmp_path_factory.mktemp("viz_data")
    generate("mars", root, ids=8, cameras=2, seed=0, height=H, width=W, preset="easy",
             tracklet_len=(6, 10), progress=False)
    _, report = compute_dataset_flows("mars", root, workers=0, progress=False)
    assert not report.failed
    return root


def _config(method: str, root: Path, out: Path) -> dict:
    args, modalities, _ = METHODS[method]
    return {
        "seed": 0, "output_dir": str(out),
        "data": {"dataset": "mars", "root": str(root), "height": H, "width": W,
                 "train_sampler": {"name": "consecutive", "args": {"length": T}},
                 "test_plan": {"name": "all_consecutive", "args": {"length": T}},
                 "P": 2, "K": 2, "workers": 0, "modalities": modalities},
        "model": {"name": method, "args": dict(args)},
        "loss": [{"name": "ce"}],
        "optim": {"name": "adam", "lr": 1e-3},
        "schedule": {"name": "constant"},
        "train": {"epochs": 1, "iters_per_epoch": 2, "device": "cpu", "progress": False,
                  "eval_every": 0},
    }


def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def _returned_maps(cfg, num_classes: int) -> set[str]:
    """Names a forward pass of the run's model returns (independent of the report)."""
    from videoreid.engine.builders import build_model_from_config

    model = build_model_from_config(cfg, num_classes).eval()
    batch = {"images": torch.rand(1, T, 3, H, W), "frame_mask": torch.ones(1, T, dtype=torch.bool),
             "flow": torch.randn(1, T, 2, H, W), "pose": torch.rand(1, T, 57, H // 8, W // 8)}
    with torch.no_grad():
        return set(model(batch).attention)


def _figures(page: str) -> list[dict[str, str]]:
    out = []
    for m in re.finditer(r'<figure class="([^"]*)"( data-maps="([^"]*)")?><img src="([^"]*)"'
                         r'.*?<figcaption>(.*?)</figcaption>', page, re.S):
        out.append({"class": m.group(1), "maps": m.group(3), "src": m.group(4),
                    "caption": html.unescape(m.group(5))})
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_visualize_draws_every_named_map_of_each_method(method, data_root, tmp_path):
    from videoreid.cli.main import main
    from videoreid.config import config_from_dict
    from videoreid.engine.builders import train_from_config

    cfg = config_from_dict(_config(method, data_root, tmp_path / "run"))
    threads = _one_thread()
    try:
        train_from_config(cfg)
        rc = main(["visualize", str(tmp_path / "run"), "--queries", "1",
                   "--attention-matches", "1"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    page = (tmp_path / "run" / "report.html").read_text()
    figures = _figures(page)
    assert figures and all(f["src"].startswith("data:image/") for f in figures)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing outside the file

    returned = _returned_maps(cfg, 4)
    _, _, paper_maps = METHODS[method]
    assert paper_maps <= returned, (method, returned)
    attention = [f for f in figures if f["class"] == "att"]
    # three queries (best, median, worst), each with its top match
    assert len(attention) == 6, [f["caption"] for f in figures]
    for f in attention:
        assert set(f["maps"].split(",")) == returned, (f["maps"], returned)
    pngs = sorted((tmp_path / "run" / "report_images").glob("attention_*.png"))
    assert len(pngs) == 6 and all(0 < p.stat().st_size < 300_000 for p in pngs)


def test_report_tables_and_pictures_number_cameras_like_the_files(data_root, tmp_path):
    """Every query caption's id and camera name a tracklet whose MARS file names carry that
    camera (1-based ``C<n>``), and the per-camera table uses the same numbers."""
    from videoreid.config import config_from_dict
    from videoreid.engine.builders import train_from_config
    from videoreid.viz.report import write_report

    run = tmp_path / "run"
    cfg = config_from_dict(_config("baseline", data_root, run))
    threads = _one_thread()
    try:
        train_from_config(cfg)
        write_report(run, queries=1, attention_matches=-1)
    finally:
        torch.set_num_threads(threads)
    page = (run / "report.html").read_text()
    files = {p.name[:6] for p in (data_root / "mars" / "bbox_test").rglob("*.jpg")}
    captions = [f["caption"] for f in _figures(page) if "query id" in f["caption"]]
    assert len(captions) == 3
    for cap in captions:
        pid, cam = re.search(r"query id (\d+) · cam (\d+)", cap).groups()
        assert f"{int(pid):04d}C{cam}" in files, (cap, sorted(files))
    header = re.search(r"query \\ gallery</th>(.*?)</tr>", page).group(1)
    assert re.findall(r"camera (\d)", header) == ["1", "2"]
    assert "AP " in captions[0] and "first match: rank" in captions[0]
    assert (run / "ranked_results.png").is_file() and (run / "cmc.png").is_file()
    for proto in ("market", "official", "query_in_gallery"):
        assert f"<td>mars</td><td>0</td><td>{proto}</td>" in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var el = document.createElement('pre');
  el.id = 'img-check';
  el.textContent = 'images=' + imgs.length + ' loaded=' + ok;
  document.body.appendChild(el);
});
</script>"""


def _browser(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}",
             "--virtual-time-budget=15000"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=180)


def test_train_writes_the_report_and_a_browser_shows_it(data_root, tmp_path):
    """``videoreid train`` ends with report.html; headless Chromium loads every picture in it
    and its screenshot is not blank."""
    import yaml

    from videoreid.cli.main import main

    chromium = _chromium()
    cfg_path = tmp_path / "stan.yaml"
    cfg_path.write_text(yaml.safe_dump(_config("stan", data_root, tmp_path / "run")))
    threads = _one_thread()
    try:
        assert main(["train", str(cfg_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = tmp_path / "run" / "report.html"
    assert report.is_file()
    n_img = report.read_text().count("<img ")
    assert n_img >= 10  # cmc, training, 6 ranked lists, attention pictures
    if chromium is None:
        pytest.skip("no chromium on PATH (CI installs the Debian package `chromium`)")

    checked = tmp_path / "checked.html"
    checked.write_text(report.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _browser(chromium, tmp_path, "--dump-dom", checked.as_uri())
    m = re.search(r"images=(\d+) loaded=(\d+)", dom.stdout)
    assert m, dom.stderr[-2000:]
    assert int(m.group(1)) == n_img and int(m.group(2)) == n_img, m.group(0)

    shot = tmp_path / "shot.png"
    res = _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,1800",
                   "--hide-scrollbars", report.as_uri())
    assert shot.is_file(), res.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert img.shape[:2] == (1800, 1280)
    non_white = (img < 245).any(axis=2).mean()
    colours = np.unique(img.reshape(-1, 3) // 8, axis=0).shape[0]
    assert non_white > 0.05 and colours > 200, (non_white, colours)
