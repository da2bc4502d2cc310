"""DDP that holds for the paper recipes: 2 CPU processes (gloo, torchrun).

One torchrun launch (process start-up dominates the cost) runs, on each rank:

1. synchronised batch norm on this rank's half of a batch — plain BN (``(N, C, H, W)``),
   RGSA's token BN and its analytic pair BN (projected and naive paths) — whose outputs,
   input gradients, summed parameter gradients and running statistics must equal
   ``nn.BatchNorm*`` run by this (single) test process on the concatenated batch;
2. a few training steps of a STAN + OIM config and of an RGSA/RGTR config (``sync_bn``, no
   frame-level CE, so its frame classifier is unused), tiny backbone, tiny synthetic MARS:
   the weights, BN buffers and the OIM lookup table must be identical on both ranks and in
   rank 0's checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.slow

G, M, K = 6, 3, 5  # pair BN: groups (3 per rank), members, channels


def bn_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "x2d": torch.randn(8, 4, 3, 2, generator=g) * 3 + 1,  # (N, C, H, W)
        "w2d": torch.randn(8, 4, 3, 2, generator=g),
        "tok": torch.randn(4, 3, K, generator=g) + 2,  # (G, M, K) tokens
        "wtok": torch.randn(4, 3, K, generator=g),
        "u": torch.randn(G, M, K, generator=g) + 0.5,
        "v": torch.randn(G, M, K, generator=g) * 2,
        "wpair": torch.randn(G, M, M, K, generator=g),
    }


def rank_bn_check(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Synchronised BN on this rank's half; gradients of ``Σ w·out`` (see module docstring)."""
    import torch.distributed as dist

    from videoreid.models.rgsa_rgtr import PairDifferenceBatchNorm, _TokenBN
    from videoreid.models.sync_bn import convert_sync_batchnorm

    data = bn_inputs()
    res: dict[str, torch.Tensor] = {}

    def half(t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0] // world
        return t[rank * n:(rank + 1) * n].clone()

    def record(name: str, bn: nn.Module, out: torch.Tensor, inputs: dict[str, torch.Tensor]):
        res[f"{name}/out"] = out.detach()
        for k, x in inputs.items():
            res[f"{name}/grad_{k}"] = x.grad.detach()
        for pn, p in bn.named_parameters():
            gsum = p.grad.detach().clone()
            dist.all_reduce(gsum)  # what DDP averages (× world) over ranks
            res[f"{name}/param_{pn}"] = gsum
        for bn_name, b in bn.named_buffers():
            res[f"{name}/buffer_{bn_name}"] = b.detach().clone()

    plain = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(4, momentum=0.3)))[0]
    x = half(data["x2d"]).requires_grad_()
    out = plain(x)
    (out * half(data["w2d"])).sum().backward()
    record("plain", plain, out, {"x": x})
    res["plain/type"] = torch.tensor(float(type(plain).__name__ == "SyncBatchNorm"))

    tok = convert_sync_batchnorm(nn.Sequential(_TokenBN(K, momentum=None)))[0]
    x = half(data["tok"]).requires_grad_()
    out = tok(x)
    (out * half(data["wtok"])).sum().backward()
    record("token", tok, out, {"x": x})

    pair = convert_sync_batchnorm(nn.Sequential(PairDifferenceBatchNorm(K, momentum=0.2)))[0]
    assert pair.sync
    u, v = half(data["u"]).requires_grad_(), half(data["v"]).requires_grad_()
    out = pair.pairwise(u, v)
    (out * half(data["wpair"])).sum().backward()
    record("pair", pair, out, {"u": u, "v": v})

    naive = convert_sync_batchnorm(nn.Sequential(PairDifferenceBatchNorm(K, momentum=0.2)))[0]
    u, v = half(data["u"]).requires_grad_(), half(data["v"]).requires_grad_()
    z = (u.unsqueeze(2) - v.unsqueeze(1)).reshape(-1, K)
    out = naive(z).reshape(-1, M, M, K)
    (out * half(data["wpair"])).sum().backward()
    record("naive", naive, out, {"u": u, "v": v})
    return res


def rank_train(cfg_name: str, overrides: list[str], run_dir: Path) -> dict[str, torch.Tensor]:
    from videoreid.config import load_config
    from videoreid.engine.builders import build_splits, train_split
    from videoreid.engine.distributed import get_dist_info

    cfg = load_config(cfg_name, [*overrides, f"output_dir={run_dir}"])
    (split,) = build_splits(cfg)
    out = train_split(cfg, split, run_dir, torch.device("cpu"))
    trainer = out["trainer"]
    state = {f"model/{k}": v.detach().clone() for k, v in trainer.module.state_dict().items()}
    state.update({f"objective/{k}": v.detach().clone()
                  for k, v in trainer.objective.state_dict().items()})
    state["_ddp"] = torch.tensor(float(trainer.model is not trainer.module))
    state["_world"] = torch.tensor(float(get_dist_info().world_size))
    state["_trained"] = torch.tensor([float(p.requires_grad)
                                      for p in trainer.module.parameters()])
    # identities this rank's batches held: every epoch starts a new pass of the sampler
    sampler, seen = trainer.train_loader.batch_sampler, torch.zeros(split.num_train_pids)
    data_pass = 0
    for _ in range(cfg.train.epochs):
        left = trainer.iters_per_epoch
        while left:
            take = min(left, len(sampler))
            seen[sampler.rank_identities(data_pass)[: take * sampler.P]] = 1.0
            left -= take
            data_pass += 1
    assert data_pass == trainer.data_pass
    state["_seen"] = seen
    return state


SCRIPT = """
import json, sys
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
import test_ddp_recipes as t
from videoreid.engine.distributed import cleanup, init_distributed, setup_logging
setup_logging()
info, device = init_distributed("cpu")
out = Path(sys.argv[1])
torch.save(t.rank_bn_check(info.rank, info.world_size), out / f"bn_rank{{info.rank}}.pt")
for name, (cfg, overrides) in json.loads(sys.argv[2]).items():
    state = t.rank_train(cfg, overrides, out / name)
    torch.save(state, out / f"{{name}}_rank{{info.rank}}.pt")
cleanup()
"""

COMMON = [
    "data.height=64", "data.width=32", "data.P=4", "data.K=2", "data.workers=0",
    "data.train_sampler.args.length=4", "data.test_plan.args.length=4",
    "data.augment.pad=2", "data.augment.erasing=0.0",
    "model.args.backbone=resnet_tiny", "model.args.pretrained=null", "model.args.last_stride=1",
    "train.epochs=2", "train.iters_per_epoch=2", "train.device=cpu", "train.progress=false",
    "train.eval_every=0", "train.checkpoint_every=1", "eval.batch_size=8",
]
RUNS = {
    # OIM + diversity: the softmax classifier is unused (probed and left out)
    "stan": ("stan/mars", [
        "model.args.K=2", "model.args.d=8", "model.args.embed_dim=16",
        "model.args.num_frames=4", "optim.lr=0.05",
        "optim.param_groups=[{match: backbone., lr_mult: 0.1}]",
    ]),
    # sync BN (plain, token and pair BN); no frame CE, so the frame classifier is unused
    "rgsa": ("rgsa_rgtr/mars", [
        "model.args.r1=4", "model.args.r2=8", "model.args.seq_len=4",
        "model.args.image_size=[64, 32]", "data.test_plan.args.stride=2",
        "loss=[{name: ce}, {name: adaptive_triplet}]", "train.sync_bn=true",
    ]),
}


def reference_bn() -> dict[str, torch.Tensor]:
    """``nn.BatchNorm*`` of one process on the whole batch (pairs materialised)."""
    data = bn_inputs()
    ref: dict[str, torch.Tensor] = {}

    def run(name, bn, x_in, make, w, grads):
        out = make(bn)
        (out * w).sum().backward()
        ref[f"{name}/out"] = out.detach()
        for k, x in grads.items():
            ref[f"{name}/grad_{k}"] = x.grad
        for pn, p in bn.named_parameters():
            ref[f"{name}/param_{pn}"] = p.grad
        for bn_name, b in bn.named_buffers():
            ref[f"{name}/buffer_{bn_name}"] = b

    x = data["x2d"].clone().requires_grad_()
    run("plain", nn.BatchNorm2d(4, momentum=0.3), x, lambda bn: bn(x), data["w2d"], {"x": x})
    t = data["tok"].clone().requires_grad_()
    run("token", nn.BatchNorm1d(K, momentum=None), t,
        lambda bn: bn(t.reshape(-1, K)).reshape(t.shape), data["wtok"], {"x": t})
    for name in ("pair", "naive"):
        u, v = data["u"].clone().requires_grad_(), data["v"].clone().requires_grad_()
        run(name, nn.BatchNorm1d(K, momentum=0.2), u,
            lambda bn, u=u, v=v: bn((u.unsqueeze(2) - v.unsqueeze(1)).reshape(-1, K)).reshape(
                G, M, M, K), data["wpair"], {"u": u, "v": v})
    return ref


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    import json

    from videoreid.config import load_config
    from videoreid.engine.builders import prepare_data_root

    tmp = tmp_path_factory.mktemp("ddp")
    synth = (f"data.root={tmp / 'data'}",
             "data.synth={layout: mars, ids: 12, cameras: 2, preset: easy, seed: 0, height: 64,"
             " width: 32, args: {keypoints: false, tracklet_len: [6, 10]}}")
    prepare_data_root(load_config(None, list(synth), check=False))
    runs = {k: (cfg, [*synth, *COMMON, *extra]) for k, (cfg, extra) in RUNS.items()}
    script = tmp / "ddp_recipes.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(tmp), json.dumps(runs)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return tmp, proc.stderr


def test_sync_bn_equals_one_process_on_the_concatenated_batch(ddp_run):
    tmp, _ = ddp_run
    ranks = [torch.load(tmp / f"bn_rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0].pop("plain/type").item() == 1.0 and ranks[1].pop("plain/type").item() == 1.0
    ref = reference_bn()
    assert set(ranks[0]) == set(ref)
    for key, want in ref.items():
        if "/out" in key or "/grad_" in key:  # each rank holds its half of the batch
            got = torch.cat([ranks[0][key], ranks[1][key]])
        else:  # parameter gradients (summed over ranks) and running statistics
            torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
            got = ranks[0][key]
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_ranks_hold_identical_weights_tables_and_checkpoint(ddp_run, name):
    tmp, log = ddp_run
    a = torch.load(tmp / f"{name}_rank0.pt", weights_only=True)
    b = torch.load(tmp / f"{name}_rank1.pt", weights_only=True)
    assert a["_ddp"].item() == 1.0 and a["_world"].item() == 2.0
    assert set(a) == set(b)
    synced_bn = "train.sync_bn=true" in RUNS[name][1]
    for k in a:
        if k == "_seen":  # the identities each rank drew differ by design
            continue
        if not synced_bn and ".running_" in k:
            # Without sync_bn each rank's last forward updates its own running statistics;
            # DDP broadcasts rank 0's at every forward, and rank 0's are checkpointed.
            continue
        assert torch.equal(a[k], b[k]), f"{name}: {k} differs between ranks"
    ckpt = torch.load(tmp / name / "checkpoints" / "epoch_0002.pt", weights_only=False)
    for k, v in ckpt["model"].items():
        assert torch.equal(v, a[f"model/{k}"]), k
    for k, v in ckpt["objective"].items():
        assert torch.equal(v, a[f"objective/{k}"]), k
    assert (tmp / name / "features.npz").is_file()  # rank 0 evaluated after training
    # exactly the unused head was left out of training, and the log says so
    from videoreid.config import load_config
    from videoreid.engine.builders import build_model_from_config

    cfg_name, extra = RUNS[name]
    model = build_model_from_config(load_config(cfg_name, [*COMMON, *extra]), 4)
    names = [n for n, _ in model.named_parameters()]
    frozen = [n for n, t in zip(names, a["_trained"].tolist(), strict=True) if t == 0.0]
    head = "classifier." if name == "stan" else "frame_classifier."
    assert frozen == [n for n in names if n.startswith(head)], frozen
    assert "receive no gradient" in log and head.rstrip(".") in log


def test_oim_table_is_updated_from_every_rank(ddp_run):
    """Identical tables could also mean "rank 0's features only, broadcast": the filled rows
    must be exactly the identities of both ranks' batches, unit norm."""
    tmp, _ = ddp_run
    a = torch.load(tmp / "stan_rank0.pt", weights_only=True)
    b = torch.load(tmp / "stan_rank1.pt", weights_only=True)
    lut = a["objective/terms.0.lut"]
    filled = lut.norm(dim=1) > 0
    both = (a["_seen"] + b["_seen"]) > 0
    assert (b["_seen"] > a["_seen"]).any()  # rank 1 drew identities rank 0 never saw
    assert torch.equal(filled, both)
    torch.testing.assert_close(lut[filled].norm(dim=1), torch.ones(int(filled.sum())))
