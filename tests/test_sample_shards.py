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


# --- output folders never mix runs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [("--seed", "6"), ("--shard-size", "2"), ("--steps", "3"), ("--sampler", "pc"),
                                    ("--eta", "0.5"), ("--format", "png")])
def test_a_rerun_with_other_settings_is_refused_before_any_work(model, one_process, tmp_path, capsys, change):
    out = tmp_path / "run"
    assert main(_flags(model, out)) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    flags = _flags(model, out)
    if change[0] in flags:
        flags[flags.index(change[0]) + 1] = change[1]
    else:
        flags += list(change)
    capsys.readouterr()
    assert main(flags) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("scorekit sample: error:")]
    assert len(errors) == 1 and f"--out {out} holds a run with other settings" in errors[0]
    assert "--overwrite" in errors[0]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written, nothing drawn
    np.testing.assert_array_equal(load_shards(str(out))[0], load_shards(str(one_process))[0])


def test_another_model_is_another_run(model, tmp_path, capsys):
    other = make_ddpm_cifar10_folder(str(tmp_path / "other"))  # same configs, other random weights
    out = tmp_path / "run"
    assert main(_flags(model, out)) == 0
    flags = _flags(other, out)
    assert main(flags) == 2
    assert "model_digest" in capsys.readouterr().err
    import shutil

    shutil.rmtree(other)
    shutil.copytree(model, other)  # the same weights under another path: still another --model
    assert main(flags) == 2


def test_overwrite_replaces_the_old_run_and_the_manifest_describes_the_disk(model, tmp_path, capsys):
    def seed6(out, *extra):
        flags = _flags(model, out, *extra)
        flags[flags.index("--seed") + 1] = "6"
        return flags

    out = tmp_path / "run"
    assert main(_flags(model, out)) == 0
    (out / "notes.txt").write_text("mine")  # not a shard: left alone
    capsys.readouterr()
    assert main(seed6(out, "--overwrite")) == 0
    assert "--overwrite" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert main(seed6(fresh)) == 0
    np.testing.assert_array_equal(load_shards(str(out))[0], load_shards(str(fresh))[0])  # only the new run's images
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 6 and manifest["complete"]
    assert manifest["shards"] == sorted(p.name for p in out.glob("shard-*"))
    assert (out / "notes.txt").read_text() == "mine"


def test_shards_without_a_manifest_are_refused(model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_flags(model, out)) == 0
    os.remove(out / "manifest.json")
    assert main(_flags(model, out)) == 2
    assert "no manifest.json, so their settings are unknown" in capsys.readouterr().err
    assert main(_flags(model, out, "--overwrite")) == 0


def test_an_interrupted_run_is_recorded_as_unfinished_and_resumes(model, tmp_path, monkeypatch, capsys):
    from scorekit.cli import sample_shards

    out = tmp_path / "run"
    calls = []
    real = sample_shards.write_shard

    def crash_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sample_shards, "write_shard", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        main(_flags(model, out))
    manifest = json.loads((out / "manifest.json").read_text())  # written before drawing: settings and what is there
    assert manifest["complete"] is False and manifest["shards"] == ["shard-00000.npz"]
    with pytest.raises(ValueError, match="unfinished run .1 of 3 shards"):
        load_shards(str(out))
    monkeypatch.setattr(sample_shards, "write_shard", real)
    capsys.readouterr()
    assert main(_flags(model, out)) == 0
    assert "wrote shards [1, 2], skipped (already there) [0]" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
