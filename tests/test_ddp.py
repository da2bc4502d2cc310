"""DDP: 2 CPU processes (gloo, torchrun) on half batches == 1 process on the global batch.

The equality is exact in exact arithmetic here because nothing couples samples across the
batch: the toy model has no BatchNorm, and cross-entropy is a mean of per-sample terms, so
the mean of the two ranks' local-mean gradients IS the global-mean gradient (equal local
batch sizes). Batch-hard triplet would not do: it mines within the local batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from videoreid.engine.distributed import DistInfo
from videoreid.engine.hooks import LRScheduleHook
from videoreid.engine.trainer import Trainer
from videoreid.losses.objective import build_objective
from videoreid.models.output import ReIDOutput

GLOBAL_BATCH = 8
STEPS = 6
NUM_CLASSES = 4


class ToyNet(nn.Module):
    """BN-free: per-frame MLP, temporal mean, linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Flatten(2), nn.Linear(3 * 4 * 4, 16), nn.ReLU())
        self.classifier = nn.Linear(16, NUM_CLASSES)

    def forward(self, batch: dict) -> ReIDOutput:
        emb = self.frame(batch["images"]).mean(1)
        return ReIDOutput(embedding=emb, logits=self.classifier(emb) if self.training else None)


def run_training(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """Train ToyNet for STEPS steps; rank r of W gets its slice of every global batch."""
    torch.manual_seed(0)
    model = ToyNet()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(STEPS * GLOBAL_BATCH, 2, 3, 4, 4, generator=g)
    pids = torch.randint(0, NUM_CLASSES, (STEPS * GLOBAL_BATCH,), generator=g)
    local = GLOBAL_BATCH // world_size
    batches = []
    for s in range(STEPS):
        lo = s * GLOBAL_BATCH + rank * local
        batches.append({"images": images[lo:lo + local], "pids": pids[lo:lo + local]})
    objective = build_objective([{"name": "ce"}], num_classes=NUM_CLASSES, feat_dim=16)
    opt = torch.optim.SGD([{"params": model.parameters(), "lr": 0.2, "base_lr": 0.2}],
                          lr=0.2, momentum=0.9, weight_decay=1e-3)
    trainer = Trainer(model, objective, opt, batches, epochs=2, iters_per_epoch=STEPS // 2,
                      grad_clip=5.0, progress=False,
                      hooks=[LRScheduleHook(name="step", step_size=1, gamma=0.5,
                                            warmup_epochs=1, warmup_factor=0.1)])
    trainer.train()
    state = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
    state["_ddp"] = torch.tensor(float(isinstance(trainer.model,
                                                  nn.parallel.DistributedDataParallel)))
    return state


SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
from test_ddp import run_training
from videoreid.engine.distributed import cleanup, get_dist_info, init_distributed
info, device = init_distributed("cpu")
state = run_training(info.rank, info.world_size)
if info.rank == 0:
    torch.save(state, sys.argv[1])
    import json
    print(json.dumps({{"world_size": info.world_size,
                      "backend": torch.distributed.get_backend()}}))
cleanup()
"""


def test_two_process_gloo_equals_one_process(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "state.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    assert info == {"world_size": 2, "backend": "gloo"}
    ddp_state = torch.load(out, weights_only=True)
    assert ddp_state.pop("_ddp").item() == 1.0  # the model really was DDP-wrapped

    single = run_training(rank=0, world_size=1)
    assert single.pop("_ddp").item() == 0.0
    torch.manual_seed(0)
    initial = ToyNet().state_dict()
    for k, v in single.items():
        assert not torch.allclose(v, initial[k])  # training moved every tensor
        torch.testing.assert_close(ddp_state[k], v, rtol=1e-5, atol=1e-6)


def test_train_loader_shards_pk_sampler_by_rank(tmp_path):
    """The builder gives each of W ranks P/W identities, disjoint across ranks."""
    from videoreid.config import load_config
    from videoreid.data.tracklet import Tracklet
    from videoreid.data.transforms import ClipTransform
    from videoreid.engine.builders import build_train_loader

    tracklets = [Tracklet((tmp_path / f"{i}.jpg",), pid=i // 2, camid=i % 2) for i in range(24)]
    cfg = load_config(None, ["data.P=4", "data.K=2", "data.workers=0"], check=False)
    tf = ClipTransform(32, 16, train=True)
    seen = []
    for rank in range(2):
        loader = build_train_loader(cfg, tracklets, tf, dist=DistInfo(rank, 2))
        bs = loader.batch_sampler
        assert (bs.P, bs.K, bs.rank, bs.world_size) == (2, 2, rank, 2)
        ids = set()
        for batch in bs:
            assert len(batch) == 4
            ids |= {tracklets[i % len(tracklets)].pid for i in batch}
        seen.append(ids)
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    from videoreid.config import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        build_train_loader(load_config(None, ["data.P=3"], check=False), tracklets, tf,
                           dist=DistInfo(0, 2))
