"""Sampling at scale: ``scorekit sample --num-images N --out DIR`` in shards, across 2 CPU processes, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hub_layouts import make_ddpm_cifar10_folder

from scorekit.cli import main
from scorekit.cli.sample_shards import load_shards

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
N, SHARD = 7, 3  # 3 shards: 3 + 3 + 1 images


def _flags(model, out, *extra):
    return ["sample", "--model", model, "--sampler", "ddim", "--steps", "2", "--seed", "5", "--num-images", str(N),
            "--shard-size", str(SHARD), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_ddpm_cifar10_folder(str(tmp_path_factory.mktemp("model") / "ddpm"))


@pytest.fixture(scope="module")
def one_process(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    assert main(_flags(model, out)) == 0
    return out


def _distinct(images: np.ndarray) -> int:
    return len({im.tobytes() for im in images})


def test_one_process_writes_n_distinct_images(one_process):
    images, _ = load_shards(str(one_process))
    assert images.shape == (N, 8, 8, 3) and images.dtype == np.uint8
    assert _distinct(images) == N
    manifest = json.loads((one_process / "manifest.json").read_text())
    assert manifest["num_shards"] == 3 and manifest["num_images"] == N


def test_resume_redraws_only_missing_shards_bit_exactly(model, one_process, tmp_path, capsys):
    out = tmp_path / "resumed"
    assert main(_flags(model, out)) == 0
    os.remove(out / "shard-00001.npz")
    before = (out / "shard-00000.npz").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_flags(model, out)) == 0
    assert "wrote shards [1], skipped (already there) [0, 2]" in capsys.readouterr().out
    assert (out / "shard-00000.npz").stat().st_mtime_ns == before
    np.testing.assert_array_equal(load_shards(str(out))[0], load_shards(str(one_process))[0])


def test_png_format_numbers_every_image(model, tmp_path):
    out = tmp_path / "png"
    assert main(_flags(model, out, "--format", "png")) == 0
    names = sorted(name for shard in out.glob("shard-*") for name in os.listdir(shard))
    assert names == [f"{i:07d}.png" for i in range(N)]


@pytest.mark.slow
def test_two_cpu_processes_union_is_exactly_the_one_process_images(model, one_process, tmp_path):
    out = tmp_path / "two"
    # accelerate's --cpu launcher runs ONE process unless MPI is set up; --multi_gpu is its torchrun launcher, which
    # on a machine without GPUs starts CPU processes (gloo), as `scorekit sample` asks for with --device cpu.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "scorekit",
           *_flags(model, out)]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "process 0/2" in result.stdout and "process 1/2" in result.stdout
    images, _ = load_shards(str(out))
    assert images.shape[0] == N and _distinct(images) == N
    np.testing.assert_array_equal(images, load_shards(str(one_process))[0])  # reproducible, whatever the processes


@pytest.mark.parametrize("extra, message", [(("--num-images", "0"), "--num-images must be"),
                                            (("--num-images", "-3"), "--num-images must be"),
                                            (("--num-images", "4", "--shard-size", "0"), "--shard-size must be")])
def test_bad_counts_fail_before_loading_the_model(tmp_path, capsys, extra, message):
    code = main(["sample", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "o"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_out_that_is_a_file_fails_before_loading(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    code = main(["sample", "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "taken"),
                 "--num-images", "4"])
    assert code == 2
    assert "is a file" in capsys.readouterr().err
