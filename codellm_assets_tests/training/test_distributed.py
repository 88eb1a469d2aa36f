"""Data-parallel training on CPU: real torchrun, two processes, the gloo backend, the tiny model.

Two ranks with a per-rank batch B (2 sequences x 2 accumulated micro-batches) must follow one process with 2B
(DistributedSampler split + DDP's averaged gradients are that same step), and a ``kill -9`` of one rank must
resume to the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from codellm_assets.core.training import distributed
from codellm_assets.core.training.checkpoints import training_fingerprint
from codellm_assets.core.training.lora import METRICS_FILE, lora_config_for, train_lora
from codellm_assets.settings import DistributedSettings, TrainingSettings

# Few steps of the tiny model; dropout 0 so the only difference between 1 and 2 processes is float summation
# order (mean of two per-rank means vs one mean, gloo's all-reduce), and one thread per rank so each is
# deterministic and the two ranks fit the 2 shared cores.
BASE = dict(max_steps=12, batch_size=4, learning_rate=2e-3, warmup_steps=2, logging_steps=1, eval_steps=1000,
            save_steps=2, lora_dropout=0.0, threads=1, eval_max_sequences=8, qlora="off", seed=7)
# Loss is ~3-6 nats. Reordered fp32 sums differ by ~1e-7 relative; Adam turns that into ~1e-6 weight noise
# over 12 steps. 1e-4 absolute is 100x that noise yet far below one step's loss change (~1e-2), so a wrong
# split (other data, half the batch, un-averaged gradients) fails it.
LOSS_TOL = 1e-4


def _kwargs(tiny_setup, out_dir):
    return dict(base_model_dir=str(tiny_setup.base_dir), dataset_dir=str(tiny_setup.dataset_dir),
                out_dir=str(out_dir), target_modules=list(tiny_setup.target_modules), r=4, alpha=8)


def _two_ranks(**over) -> TrainingSettings:
    """Two ranks x (2 sequences x 2 accumulated micro-batches): the global batch of 8 also exercises DDP's
    no_sync accumulation; one process with batch 8 is the reference."""
    return TrainingSettings(**{**BASE, "batch_size": 2, "gradient_accumulation_steps": 2, **over,
                               "distributed": {"nproc_per_node": 2}})


@pytest.fixture(scope="module")
def ddp_run(tiny_setup, tmp_path_factory):
    """An uninterrupted two-process run (the reference of both tests), with the log records it streamed."""
    out = tmp_path_factory.mktemp("ddp")
    records: list[dict] = []
    result = distributed.launch(training=_two_ranks(), on_log=records.append, **_kwargs(tiny_setup, out))
    return result, records


def test_two_ranks_follow_one_process_with_the_doubled_batch(ddp_run, tiny_setup, tmp_path, record_property):
    ddp, records = ddp_run
    single = train_lora(training=TrainingSettings(**{**BASE, "batch_size": 8}),
                        **_kwargs(tiny_setup, tmp_path))
    assert ddp.completed and ddp.steps == single.steps == BASE["max_steps"]
    assert [s for s, _ in ddp.loss_curve] == [s for s, _ in single.loss_curve] == list(range(1, 13))
    diffs = [abs(a - b) for (_, a), (_, b) in zip(ddp.loss_curve, single.loss_curve, strict=True)]
    record_property("max_loss_diff", max(diffs))  # in --junitxml: the measured gap, for the report
    assert max(diffs) < LOSS_TOL, diffs
    assert ddp.loss_curve[-1][1] < ddp.loss_curve[0][1] - 0.05  # it learned: the comparison is not vacuous
    assert ddp.val_loss_base == pytest.approx(single.val_loss_base, abs=1e-6)
    assert ddp.val_loss_adapter == pytest.approx(single.val_loss_adapter, abs=LOSS_TOL)
    assert ddp.train_tokens == single.train_tokens  # counted over both ranks
    # rank 0 alone logged and checkpointed: one record per step, the adapter and the metrics written once
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 13))
    assert len([r for r in records if r.get("event") == "start"]) == 1
    assert (tmp_path / METRICS_FILE).is_file() and os.path.isfile(os.path.join(ddp.adapter_dir,
                                                                               "adapter_model.safetensors"))


def test_a_half_batch_per_rank_is_caught(ddp_run, tiny_setup, tmp_path):
    """The tolerance discriminates: one process with half the global batch is outside it."""
    ddp, _ = ddp_run
    half = train_lora(training=TrainingSettings(**{**BASE, "max_steps": 4}), **_kwargs(tiny_setup, tmp_path))
    assert max(abs(a - b) for (_, a), (_, b) in zip(ddp.loss_curve, half.loss_curve)) > 10 * LOSS_TOL


def _rank_pid(proc: subprocess.Popen, rank: int) -> int | None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "distributed" in " ".join(child.cmdline()):
                return child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_kill_9_of_one_rank_resumes_to_the_uninterrupted_run(ddp_run, tiny_setup, tmp_path):
    ddp, _ = ddp_run
    training = _two_ranks()
    spec = distributed.write_spec(tmp_path, training, **{k: v for k, v in _kwargs(tiny_setup, tmp_path).items()
                                                         if k != "out_dir"})
    with (tmp_path / "first.log").open("wb") as logf:
        proc = subprocess.Popen(distributed.torchrun_command(training.distributed, spec), stdout=logf,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while not (tmp_path / "checkpoints" / "step-4").is_dir():  # mid-run: 4 of 12 steps done
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
                time.sleep(0.02)
            pid = _rank_pid(proc, 1)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc != 0, "torchrun must fail when a rank is killed"
    assert not (tmp_path / METRICS_FILE).exists(), "the killed run finished before the kill: no resume tested"
    last = max(int(p.name.split("-")[1]) for p in (tmp_path / "checkpoints").glob("step-*"))
    assert last < BASE["max_steps"]

    records: list[dict] = []
    resumed = distributed.launch(training=training, on_log=records.append, **_kwargs(tiny_setup, tmp_path))
    resume_events = [r for r in records if r.get("event") == "resume"]
    assert resume_events and resume_events[0]["step"] == resumed.resumed_from_step >= 4
    assert resumed.completed and resumed.steps == ddp.steps == BASE["max_steps"]
    assert [s for s, _ in resumed.loss_curve] == [s for s, _ in ddp.loss_curve]
    # same data order, weights, optimizer, scheduler and RNG restored: the same arithmetic, bit for bit
    assert resumed.loss_curve == ddp.loss_curve
    assert resumed.val_loss_adapter == ddp.val_loss_adapter


def test_torchrun_command_and_settings_rules(tmp_path):
    one = distributed.torchrun_command(DistributedSettings(nproc_per_node=2), tmp_path / "s.json")
    assert one[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in one
    assert one[-3:] == ["-m", "codellm_assets.core.training.distributed", str(tmp_path / "s.json")]
    multi = distributed.torchrun_command(
        DistributedSettings(nproc_per_node=8, nnodes=2, rdzv_endpoint="train-0.train:29400"), tmp_path / "s.json",
        node_rank=1)
    assert {"--nnodes=2", "--nproc-per-node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=train-0.train:29400",
            "--node-rank=1"} <= set(multi) and "--standalone" not in multi
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        DistributedSettings(nnodes=2)
    with pytest.raises(ValueError, match="fsdp"):
        DistributedSettings(strategy="fsdp", backend="gloo")
    assert DistributedSettings(nproc_per_node=4, nnodes=2, rdzv_endpoint="h:1").world_size == 8


def test_world_size_is_in_the_fingerprint_but_one_process_keeps_its_own():
    lora = lora_config_for(["q_proj"], TrainingSettings(), 4, 8)

    def fp(**kw):
        return training_fingerprint(TrainingSettings(**kw), lora, max_steps=4, base_fp="b", data_fp="d", init_fp=None)

    assert fp() == fp(distributed={"nproc_per_node": 1, "strategy": "fsdp"})  # bookkeeping only at world 1
    assert fp() != fp(distributed={"nproc_per_node": 2}) != fp(distributed={"nproc_per_node": 4})
    assert fp(distributed={"nproc_per_node": 2}) == fp(distributed={"nproc_per_node": 1, "nnodes": 2,
                                                                    "rdzv_endpoint": "h:1"})


def test_a_failed_job_is_a_clear_error(tiny_setup, tmp_path):
    bad = _two_ranks()
    with pytest.raises(distributed.DistributedTrainingError, match="exited with"):
        distributed.launch(training=bad, **{**_kwargs(tiny_setup, tmp_path), "dataset_dir": str(tmp_path / "nope")})
    assert json.loads((tmp_path / distributed.SPEC_FILE).read_text())["dataset_dir"].endswith("nope")


@pytest.mark.gpu
def test_fsdp_on_two_gpus(tiny_setup, tmp_path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("FSDP needs 2 CUDA GPUs")
    training = TrainingSettings(**{**BASE, "distributed": {"nproc_per_node": 2, "strategy": "fsdp"}})
    result = distributed.launch(training=training, **_kwargs(tiny_setup, tmp_path))
    assert result.completed and result.loss_curve[-1][1] < result.loss_curve[0][1]


def test_env_overrides_and_a_bad_combination_names_the_key(monkeypatch):
    from codellm_assets.settings import PROJECT_ROOT, SettingsError, load_settings

    monkeypatch.setenv("CODELLM__TRAINING__DISTRIBUTED__NPROC_PER_NODE", "2")
    assert load_settings(PROJECT_ROOT / "codellm.yaml").training.distributed.world_size == 2
    monkeypatch.setenv("CODELLM__TRAINING__DISTRIBUTED__NNODES", "2")
    with pytest.raises(SettingsError, match="rdzv_endpoint"):
        load_settings(PROJECT_ROOT / "codellm.yaml")


def test_each_rank_resumes_its_own_rng_stream(tiny_setup, tmp_path):
    """Rank 0 writes every rank's RNG state; on resume rank r gets state r (its dropout masks continue)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

    from codellm_assets.core.training.checkpoints import capture_rng_state, load_checkpoint, save_checkpoint

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_setup.base_dir),
                           LoraConfig(r=2, target_modules=["q_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    sched = get_linear_schedule_with_warmup(opt, 0, 4)
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(capture_rng_state())
    ckpt = save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, scaler=None,
                           state={"step": 2}, rng_states=states)
    draws = []
    for rank in (0, 1):
        load_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, scaler=None, rank=rank)
        draws.append(torch.rand(3))
    torch.manual_seed(2)
    assert torch.equal(draws[1], torch.rand(3)) and not torch.equal(draws[0], draws[1])
