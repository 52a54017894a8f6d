"""Exact resume in one process and one run per folder (the trainer in-process; tests/test_train_processes.py kills real
processes, one and two of them).

The data position is counted in batches, so a resume is exact with accumulation groups that the end of an epoch cuts
short: 1437 train digits at batch 128 are 11 batches, i.e. groups of 3, 3, 3, 2 with ``--gradient_accumulation_steps
3``, and 6 updates cross into the second epoch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from checkpoint_state import assert_same_state, checkpoint_state

from scorekit.training import train_score
from scorekit.training.checkpoint import RUN_RECORD, prune_checkpoints

TINY = ["--dataset", "digits", "--preset", "tiny", "--learning_rate", "1e-3", "--lr_warmup_steps", "2",
        "--no_progress", "--logger", "none", "--num_class_embeds", "10", "--use_ema", "--ema_max_decay", "0.9",
        "--random_flip"]
UNEVEN = [*TINY, "--train_batch_size", "128", "--gradient_accumulation_steps", "3", "--max_train_steps", "6",
          "--checkpointing_steps", "1", "--trace_data"]
BATCHES_BEFORE = {1: 3, 2: 6, 3: 9, 4: 11, 5: 14}  # batches consumed when checkpoint-k is written (11 per epoch)


def _train(out: Path, *flags: str) -> dict:
    return train_score.main([*flags, "--output_dir", str(out)])


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("checkpoint-*"))


def _run_id(checkpoint: Path) -> str:
    return json.loads((checkpoint / RUN_RECORD).read_text())["run_id"]


@pytest.fixture(scope="module")
def uneven_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uneven") / "full"
    _train(out, *UNEVEN)
    return out


@pytest.mark.parametrize("k", sorted(BATCHES_BEFORE))
def test_uneven_accumulation_resumes_bit_exact_from_every_checkpoint(uneven_run, tmp_path, k):
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(uneven_run / f"checkpoint-{k}", resumed / f"checkpoint-{k}")  # the folder a kill leaves
    _train(resumed, *UNEVEN, "--resume_from_checkpoint", "latest")
    full = json.loads((uneven_run / "data_trace_0.json").read_text())["batches"]
    mine = json.loads((resumed / "data_trace_0.json").read_text())["batches"]
    assert len(full) == 17 and mine == full[BATCHES_BEFORE[k]:], "the resumed run trained on other batches"
    for later in range(k + 1, 7):
        assert_same_state(uneven_run / f"checkpoint-{later}", resumed / f"checkpoint-{later}")
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (uneven_run / weights).read_bytes() == (resumed / weights).read_bytes()


def test_checkpoints_hold_every_process_state_and_load_with_from_pretrained(uneven_run):
    from diffusers import UNet2DModel

    from scorekit import ScoreSDEClassConditionalPipeline

    ckpt = uneven_run / "checkpoint-5"
    state = checkpoint_state(ckpt)
    assert state["scorekit_rank_0.epoch"] == 1 and state["scorekit_rank_0.batch"] == 3
    assert not (ckpt / "model.safetensors").exists(), "weights are stored once, in unet/"
    ema = UNet2DModel.from_pretrained(ckpt, subfolder="unet_ema")
    assert ema.config.optimization_step == 5 and ema.config.num_class_embeds == 11
    pipe = ScoreSDEClassConditionalPipeline.from_pretrained(ckpt)  # the training weights, as a pipeline
    torch.testing.assert_close(pipe.unet.conv_in.weight, state["unet.conv_in.weight"], rtol=0, atol=0)


def test_a_fresh_run_refuses_a_used_folder_and_overwrite_clears_it(tmp_path):
    out = tmp_path / "run"
    _train(out, *TINY, "--train_batch_size", "8", "--max_train_steps", "4", "--checkpointing_steps", "1")
    old = _run_id(out / "checkpoint-4")
    with pytest.raises(ValueError, match=r"--output_dir=.*already holds another run \(checkpoint-1, .*checkpoint-4, "
                                         r"model_index.json\).*--overwrite_output_dir"):
        _train(out, *TINY, "--train_batch_size", "8", "--max_train_steps", "2")
    assert _checkpoints(out) == [f"checkpoint-{k}" for k in range(1, 5)]
    _train(out, *TINY, "--train_batch_size", "8", "--max_train_steps", "2", "--checkpointing_steps", "1",
           "--checkpoints_total_limit", "1", "--overwrite_output_dir")
    assert _checkpoints(out) == ["checkpoint-2"] and _run_id(out / "checkpoint-2") != old
    assert "| optimizer steps | 2 |" in (out / "README.md").read_text()


def test_pruning_deletes_only_this_runs_checkpoints(tmp_path):
    for step, run_id in ((1, "mine"), (2, "other"), (3, "mine"), (4, "mine"), (9, "other")):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / RUN_RECORD).write_text(json.dumps({"run_id": run_id}))
    removed = prune_checkpoints(str(tmp_path), "mine", keep=2)
    assert [Path(p).name for p in removed] == ["checkpoint-1"]
    assert _checkpoints(tmp_path) == ["checkpoint-2", "checkpoint-3", "checkpoint-4", "checkpoint-9"]


def test_resume_says_where_it_starts_and_refuses_a_mixed_folder(tmp_path, capsys):
    flags = [*TINY, "--train_batch_size", "8", "--max_train_steps", "3", "--checkpointing_steps", "1"]
    a, b = tmp_path / "a", tmp_path / "b"
    _train(a, *flags)
    shutil.rmtree(a / "checkpoint-3")
    capsys.readouterr()
    _train(a, *flags, "--resume_from_checkpoint", "latest")
    assert "resuming from checkpoint-2 (step 2 of 3)" in capsys.readouterr().out
    _train(b, *flags, "--max_train_steps", "1")  # b's own checkpoint-1
    shutil.copytree(a / "checkpoint-2", b / "checkpoint-2")  # latest is now run a's
    with pytest.raises(ValueError, match=r"holds checkpoints of another run .*checkpoint-1"):
        _train(b, *flags, "--resume_from_checkpoint", "latest")


def test_latest_without_checkpoint_warns_and_starts_fresh(tmp_path):
    with pytest.warns(UserWarning, match="no checkpoint-N folder in .*; starting a fresh run"):
        result = _train(tmp_path / "run", *TINY, "--train_batch_size", "8", "--max_train_steps", "1",
                        "--resume_from_checkpoint", "latest")
    assert result["steps"] == 1


def test_resuming_a_finished_run_is_a_no_op_that_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    flags = [*TINY, "--train_batch_size", "8", "--max_train_steps", "2"]
    _train(out, *flags)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    result = _train(out, *flags, "--resume_from_checkpoint", "latest")
    said = capsys.readouterr().out
    assert "resuming from checkpoint-2 (step 2 of 2): the run is finished, nothing to train" in said
    assert f"nothing to train: {out} holds the finished run" in said
    assert result["steps"] == 2 and "nan" not in (out / "README.md").read_text()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_resume_with_another_process_count_is_refused(tmp_path):
    out = tmp_path / "run"
    flags = [*TINY, "--train_batch_size", "8", "--max_train_steps", "2", "--checkpointing_steps", "1"]
    _train(out, *flags)
    record = json.loads((out / "checkpoint-1" / RUN_RECORD).read_text())
    (out / "checkpoint-1" / RUN_RECORD).write_text(json.dumps({**record, "num_processes": 2}))
    with pytest.raises(ValueError, match=r"checkpoint-1 was written by 2 processes.*--num_processes 2"):
        _train(out, *flags, "--resume_from_checkpoint", str(out / "checkpoint-1"))
