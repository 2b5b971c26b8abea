"""Scale-out paths, proven with real processes on CPU (gloo): what only shows on more than one.

- training stages under FSDP with a full state dict (2 processes) finish and save a model
  that loads and differs from the start (the final save is a collective every rank joins);
- `--shard i/N` survives `accelerate launch`, and the merge of two launched parts holds
  exactly the records of an unsharded run;
- under a launch every rank generates its own chunks, with the same records as one process;
- the reward model lands where its config says (each rank's GPU and bf16 where there is
  one), the OpenAI backend's concurrency is per URL, and a stage's `trl vllm-serve` is
  started, health-checked and stopped however the stage ends.

Every launched run is a child process with a timeout: a hang fails the test, it does not
stall the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from r1pipe.artifacts import iter_records
from r1pipe.config import ConfigError, load
from r1pipe.pipeline import execute, plan
from tests.helpers import REPO, free_port, http_server, read_jsonl, send_json, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

LAUNCH_TIMEOUT = 600  # seconds a launched stage may take here before the test fails (a hang)
FSDP = (f"    launch: {{accelerate_config: {REPO / 'configs/accelerate/fsdp.yaml'}, "
        "num_processes: 2, mixed_precision: 'no'}\n")


# On CPU accelerate (1.16) does not switch FSDP or DeepSpeed on: its state.py enables FSDP
# only for GPU-like distributed types, so a CPU launch of configs/accelerate/fsdp.yaml alone
# would run DDP over gloo, where no weight is sharded and a save that skips the gather cannot
# hang. The FSDP tests therefore put tests/fsdp_on_cpu/ first on the children's PYTHONPATH:
# its sitecustomize widens that one device check, so the two CPU processes run torch FSDP2
# (`fully_shard` over gloo) exactly as GPUs would, each holding half of every weight, and the
# final full-state-dict save is the collective that rank 1 used to skip (under the old
# `_finish` rank 0 fails with gloo's "Connection closed by peer"; on NCCL it hangs). DeepSpeed refuses to start without a GPU: ZeRO-3 is left
# to scripts/gpu_check.py.
FSDP_ON_CPU = REPO / "tests" / "fsdp_on_cpu"
FSDP_SWITCHED_ON = "r1pipe test: FSDP switched on for a CPU process"


def _cli(*args: str | Path, cwd: Path, fsdp_on_cpu: bool = False
         ) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process; a run past LAUNCH_TIMEOUT (a hung rank) fails the test.
    `fsdp_on_cpu`: launched ranks run FSDP2 for real (see the note above)."""
    path = [str(FSDP_ON_CPU)] if fsdp_on_cpu else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(REPO)]),
           "HF_HUB_OFFLINE": "1"}
    try:
        return subprocess.run([sys.executable, "-m", "r1pipe.cli", *map(str, args)], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        pytest.fail(f"`r1pipe {' '.join(map(str, args))}` still running after "
                    f"{LAUNCH_TIMEOUT} s (a rank waiting forever?):\n{err[-3000:]}")


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def _check_saved(model_dir: Path, start: Path) -> None:
    """A Hub-compatible folder like a single process writes, loadable, trained."""
    from transformers import AutoModelForCausalLM

    names = {p.name for p in model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md",
            "tokenizer.json"} <= names, names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))], names
    assert not list(model_dir.parent.glob(".*trainer-save*"))  # staging folder cleaned up
    AutoModelForCausalLM.from_pretrained(model_dir)
    before, after = _weights(start), _weights(model_dir)
    shared = sorted(set(before) & set(after))
    assert shared and all(before[k].shape == after[k].shape for k in shared)
    assert any(not before[k].equal(after[k].to(before[k].dtype)) for k in shared), \
        "the saved weights are the starting model's"


# ----------------------------------------------------------------- FSDP training stages

DISTILL = """\
stages:
  distill:
    data: mix
    trainer:
      max_steps: 2
      per_device_train_batch_size: 2
      save_steps: 2
      learning_rate: 1.0e-3
    students:
      full: {student}
"""

GRPO = """\
stages:
  r1_zero:
    from: base
    data: reasoning
    trainer:
      max_steps: 2
      per_device_train_batch_size: 4
      num_generations: 4
      max_completion_length: 8
      save_steps: 2
      learning_rate: 1.0e-3
"""


@pytest.fixture(scope="module")
def even_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with an even vocabulary (804), as real ones have: FSDP2 shards the
    tied embedding by rows, and transformers' tied-weight check cannot view an unevenly
    sharded one (the default tiny model has 813 rows)."""
    from transformers import AutoConfig

    from r1pipe.testing import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("even") / "model", vocab_size=799)
    assert AutoConfig.from_pretrained(path).vocab_size % 2 == 0
    return path


def _mix(path: Path) -> Path:
    rows = [{"id": f"r{i}", "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
             "completion": [{"role": "assistant", "content": f"The answer is {2 * i}."}]}
            for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_sft_stage_under_fsdp_two_processes_saves_a_trained_model(
        tmp_path: Path, even_model: Path) -> None:
    """Defect 1: under FSDP2 (2 CPU processes, full state dict) every rank joins the
    trainer's `save_model` gather and rank 0 turns its output into the Hub folder; the old
    `_finish`, where rank 1 returned first, fails here (gloo: "Connection closed by peer")."""
    cfg = write_pipeline(tmp_path, "fsdp-sft", DISTILL.format(student=even_model) + FSDP,
                         seed=1, base_model=str(even_model),
                         data={"mix": f"{{path: {_mix(tmp_path / 'mix.jsonl')}}}"})
    out = _cli("run", cfg, cwd=tmp_path, fsdp_on_cpu=True)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stderr.count(FSDP_SWITCHED_ON) == 2, "FSDP was not on in both ranks"
    state = json.loads((tmp_path / "run/distill/stage.json").read_text())
    assert state["status"] == "finished" and state["summary"]["full: steps"] == 2
    _check_saved(tmp_path / "run/distill/full/model", even_model)


@pytest.mark.slow
def test_grpo_stage_under_fsdp_two_processes_saves_a_trained_model(
        tmp_path: Path, even_model: Path) -> None:
    cfg = write_pipeline(tmp_path, "fsdp-grpo", GRPO + FSDP, seed=3,
                         base_model=str(even_model),
                         data={"reasoning": "{builtin: reasoning, size: 16, test_size: 4, "
                               "difficulty: 1}"})
    out = _cli("run", cfg, cwd=tmp_path, fsdp_on_cpu=True)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stderr.count(FSDP_SWITCHED_ON) == 2, "FSDP was not on in both ranks"
    state = json.loads((tmp_path / "run/r1_zero/stage.json").read_text())
    assert state["status"] == "finished" and state["summary"]["steps"] == 2
    _check_saved(tmp_path / "run/r1_zero/model", even_model)


# ----------------------------------------------------------------- launched rejection sampling

REJECT = """\
stages:
  reject_sample:
    from: base
    train_from: base
    data: reasoning
    general_data: general
    samples_per_prompt: 2
    keep_per_prompt: 1
    chunk_size: 2
    filters: {{language: null, max_paragraph_words: null}}
    general: {{mode: reference}}
    mix: {{reasoning: 50, general: 5}}
    records_per_shard: 2
    trainer: {{max_steps: 1, per_device_train_batch_size: 2, save_steps: 1}}
{launch}"""
PROMPTS = 10  # 5 chunks of 2: uneven over 2 ranks and 2 shards


def _reject_pipeline(folder: Path, launch: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"reasoning": f"{{builtin: reasoning, size: {PROMPTS}, test_size: 2, difficulty: 1}}",
            "general": "{builtin: general, size: 4}"}
    return write_pipeline(folder, "scale-rs", REJECT.format(launch=launch), seed=5, data=data,
                          generation="{backend: hf, max_new_tokens: 6, batch_size: 8}")


def _ids(run: Path, artifact: str = "generated") -> list[str]:
    return [r["id"] for r in iter_records(run / "reject_sample/data" / artifact)]


def _chunk_ranks(run: Path) -> dict[int, int]:
    """chunk -> the rank that sampled it, from the metrics line each chunk logs."""
    return {m["chunk"]: m.get("rank", 0) for m in read_jsonl(run / "reject_sample/metrics.jsonl")
            if m.get("job") == "sampling reasoning prompts"}


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The generated record ids of one process, no shards: what every split must give."""
    folder = tmp_path_factory.mktemp("one-process")
    cache = tmp_path_factory.getbasetemp() / "r1pipe-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("R1PIPE_CACHE", str(cache))
        execute(plan(load(_reject_pipeline(folder, ""))))
    ids = _ids(folder / "run")
    assert len(ids) == PROMPTS * 2
    return ids


@pytest.mark.slow
def test_launched_rejection_sampling_every_rank_generates(tmp_path: Path,
                                                          unsharded: list[str]) -> None:
    """Defect 3: under `accelerate launch` rank 0 used to sample everything while the others
    waited. Now chunk k of 5 goes to rank k mod 2; the artifact equals one process's."""
    cfg = _reject_pipeline(tmp_path, "    launch: {num_processes: 2}\n")
    out = _cli("run", cfg, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "run"
    assert json.loads((run / "reject_sample/stage.json").read_text())["status"] == "finished"
    assert _chunk_ranks(run) == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0}
    ids = _ids(run)
    assert sorted(ids) == sorted(unsharded) and len(set(ids)) == len(ids)


@pytest.mark.slow
def test_launched_shards_then_merge_equal_an_unsharded_run(tmp_path: Path,
                                                           unsharded: list[str]) -> None:
    """Defect 2: `--shard i/N` used to be dropped by the launch, so each part sampled (and
    trained on) everything. Within part i, its chunks are split over the 2 ranks."""
    cfg = _reject_pipeline(tmp_path, "    launch: {num_processes: 2}\n")
    chunks = tmp_path / "run/reject_sample/data/generated"
    for part, owned in (("0/2", [0, 2, 4]), ("1/2", [1, 3])):
        out = _cli("reject-sample", cfg, "--shard", part, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-4000:]
        state = json.loads((tmp_path / "run/reject_sample/stage.json").read_text())
        assert state["status"] == "partial"
        assert not (tmp_path / "run/reject_sample/model").exists()  # a part does not train
        done = sorted(int(p.name[6:11]) for p in chunks.glob("train-*.jsonl"))
        # this part's chunks (not everything), beside the earlier part's
        assert done == (owned if part == "0/2" else [0, 1, 2, 3, 4])
    # part 0 has chunks 0, 2, 4: its j-th chunk (k // 2) went to rank j mod 2
    assert _chunk_ranks(tmp_path / "run") == {0: 0, 2: 1, 4: 0, 1: 0, 3: 1}
    merged = _cli("run", cfg, cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr[-4000:]
    ids = _ids(tmp_path / "run")
    assert sorted(ids) == sorted(unsharded)
    assert not [i for i, n in Counter(ids).items() if n > 1]
    state = json.loads((tmp_path / "run/reject_sample/stage.json").read_text())
    assert state["status"] == "finished" and state["shards_done"] == [0, 1]


def test_rank_chunk_ownership_nests_in_shards() -> None:
    from r1pipe.contract import Shard
    from r1pipe.generation.jobs import Ranks

    shard = Shard(1, 3)
    owners = {k: r for k in range(30) if shard.owns(k)
              for r in range(4) if Ranks(r, 4).owns(k, shard)}
    assert sorted(owners) == [k for k in range(30) if k % 3 == 1]  # every chunk of the part
    assert Counter(owners.values()) == {0: 3, 1: 3, 2: 2, 3: 2}  # once each, spread evenly
    assert [k for k in range(6) if Ranks(1, 2).owns(k)] == [1, 3, 5]
    assert Ranks.from_env() == Ranks(0, 1, 0) or "WORLD_SIZE" in os.environ


# ----------------------------------------------------------------- the reward model's device


def test_reward_model_lands_on_the_configured_device_and_dtype(
        tiny_reward_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 4: the default was CPU float32 everywhere. On a CPU machine `auto` is the CPU,
    in bf16 where the CPU has bf16 instructions and float32 where it has not; a configured
    dtype is what the loaded weights have."""
    import torch

    from r1pipe.rewards.base import Batch
    from r1pipe.rewards.model import RewardModel, load_reward_model, resolve_placement

    assert (RewardModel.device, RewardModel.dtype) == ("auto", "auto")
    for native in (True, False):
        monkeypatch.setenv("R1PIPE_NATIVE_BF16", str(int(native)))
        assert resolve_placement("auto", "auto") == ("cpu", "bfloat16" if native else "float32")
    assert resolve_placement("cpu", "float32") == ("cpu", "float32")
    reward = RewardModel(model=str(tiny_reward_model_dir), device="cpu", dtype="bfloat16")
    batch = Batch(texts=["Hello!"], prompts=["Say hi."], completion_ids=None, columns={})
    assert isinstance(reward.score_batch(batch)[0], float)
    model, _ = load_reward_model(str(tiny_reward_model_dir), "bfloat16", "cpu")
    params = list(model.parameters())
    assert {p.dtype for p in params} == {torch.bfloat16}
    assert {p.device.type for p in params} == {"cpu"}
    assert RewardModel(model="x", device="tpu").problems() and \
        RewardModel(model="x", dtype="fp8").problems()


def test_reward_model_auto_is_this_ranks_gpu_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where CUDA exists, `auto`/`cuda` mean the launched rank's own GPU, in bf16 (checked
    for real by scripts/gpu_check.py; here the CUDA probe answers as an 8-GPU node would)."""
    import torch

    from r1pipe.rewards.model import resolve_placement

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert resolve_placement("auto", "auto") == ("cuda:5", "bfloat16")
    assert resolve_placement("cuda", "auto") == ("cuda:5", "bfloat16")
    assert resolve_placement("cuda:1", "float32") == ("cuda:1", "float32")


def test_r1_yaml_puts_reward_models_on_gpus_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dtype: auto` (r1pipe.precision): bf16 on a GPU that has it."""
    import torch

    from r1pipe.rewards.model import resolve_placement

    config = load(REPO / "configs/r1.yaml")
    rewards = config.stages["all_scenario_rl"].rewards
    models = [r for r in rewards.values() if isinstance(r, dict)
              and r.get("reward") == "reward_model"]
    assert len(models) == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert all(resolve_placement(r["device"], r["dtype"])[1] == "bfloat16" for r in models)


# ----------------------------------------------------------------- OpenAI backend concurrency


def test_openai_max_concurrency_is_per_url() -> None:
    """Defect 5: `max_concurrency` was a total over all URLs. With 2 servers and 3 each,
    each server sees 3 requests at once (6 in flight), never more."""
    from r1pipe.config import GenerationConfig
    from r1pipe.generation import Sampling, make_generator

    peaks: dict[int, int] = {}
    lock = threading.Lock()

    def handler_for(server: int) -> type[BaseHTTPRequestHandler]:
        live = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    live[0] += 1
                    peaks[server] = max(peaks.get(server, 0), live[0])
                time.sleep(0.3)
                with lock:
                    live[0] -= 1
                send_json(self, json.dumps({
                    "id": "x", "object": "text_completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "text": "ok", "finish_reason": "stop",
                                 "logprobs": None}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                              "total_tokens": 2}}).encode())

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    with http_server(handler_for(0)) as a, http_server(handler_for(1)) as b:
        cfg = GenerationConfig(backend="openai", base_urls=[a, b], max_concurrency=3,
                               model_name="m")
        with make_generator("m", cfg, seed=0) as gen:
            out = gen.generate([f"p{i}" for i in range(18)],
                               Sampling(n=1, temperature=1.0, max_new_tokens=4))
    assert len(out) == 18
    assert peaks == {0: 3, 1: 3}
    assert GenerationConfig().max_concurrency == 64


# ----------------------------------------------------------------- vllm_server: server mode

STAND_IN = r"""
import http.server, sys, time
delay, code = float(sys.argv[1]), int(sys.argv[3])
if code:
    print("stand-in: cannot load the model", flush=True)
    sys.exit(code)
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path.rstrip("/") == "/health" else 404)
        self.end_headers()
print("stand-in: serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"""


def _stand_in(port: int, *, delay: float = 0.5, exit_code: int = 0) -> list[str]:
    """A stand-in server started the way the real one is: its own process (group), /health."""
    return [sys.executable, "-c", STAND_IN, str(delay), str(port), str(exit_code)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False


def _child_pid(port: int) -> int:
    out = subprocess.run(["pgrep", "-f", f"{port} 0$"], capture_output=True, text=True)
    return int(out.stdout.split()[0])


def test_vllm_server_lifecycle_start_health_stop(tmp_path: Path) -> None:
    import urllib.request

    from r1pipe.vllm_server import running_server

    port = free_port()
    with running_server(_stand_in(port), host="0.0.0.0", port=port, log=tmp_path / "s.log",
                        timeout=30, poll=0.1) as url:
        assert url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            assert response.status == 200
        pid = _child_pid(port)
    assert not _alive(pid)
    assert "stand-in: serving" in (tmp_path / "s.log").read_text()


def test_vllm_server_is_stopped_when_the_stage_fails(tmp_path: Path) -> None:
    from r1pipe.vllm_server import running_server

    port = free_port()
    with pytest.raises(RuntimeError, match="training failed"), \
            running_server(_stand_in(port), host="127.0.0.1", port=port,
                           log=tmp_path / "s.log", timeout=30, poll=0.1):
        pid = _child_pid(port)
        raise RuntimeError("training failed")
    assert not _alive(pid)


def test_vllm_server_failures_say_what_happened(tmp_path: Path) -> None:
    from r1pipe.vllm_server import ServerFailed, running_server

    where = "stages.r1_zero.vllm_server"
    port = free_port()
    exited = r"(?s)exited with code 3 before.*last lines of .*cannot load the model"
    with pytest.raises(ServerFailed, match=exited), \
            running_server(_stand_in(port, exit_code=3), host="127.0.0.1", port=port,
                           log=tmp_path / "a.log", timeout=30, where=where, poll=0.1):
        pass
    with pytest.raises(ServerFailed, match=rf"{where}: .* within 1 s; raise {where}.timeout"), \
            running_server(_stand_in(port, delay=60), host="127.0.0.1", port=port,
                           log=tmp_path / "b.log", timeout=1, where=where, poll=0.1):
        pass
    assert subprocess.run(["pgrep", "-f", f"{port} 0$"], capture_output=True).returncode == 1
    with running_server(_stand_in(port), host="127.0.0.1", port=port, log=tmp_path / "c.log",
                        timeout=30, poll=0.1), \
            pytest.raises(ServerFailed, match=rf"{where}.port: {port} .* already in use"), \
            running_server(_stand_in(port), host="127.0.0.1", port=port,
                           log=tmp_path / "d.log", timeout=30, where=where):
        pass


def test_vllm_server_command_line_is_trls(tmp_path: Path) -> None:
    """The command r1pipe runs is `trl vllm-serve` with flags the installed TRL accepts."""
    from r1pipe.config import VLLMServerSection
    from r1pipe.vllm_server import serve_command, server_env

    section = VLLMServerSection(devices=[6, 7], host="0.0.0.0", port=8123,
                                tensor_parallel_size=2, args=["--max_model_len", "4096"])
    cmd = serve_command(section, "/models/policy")
    assert cmd[:4] == [sys.executable, "-m", "trl.cli.main", "vllm-serve"]
    assert cmd[4:] == ["--model", "/models/policy", "--host", "0.0.0.0", "--port", "8123",
                       "--tensor_parallel_size", "2", "--max_model_len", "4096"]
    env = server_env(section, {"RANK": "0", "WORLD_SIZE": "8", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "6,7"}
    from trl.scripts.vllm_serve import ScriptArguments, make_parser

    args, extra = make_parser().parse_args_and_config(args=cmd[4:],
                                                      return_remaining_strings=True)
    assert isinstance(args, ScriptArguments) and not extra
    assert (args.model, args.port, args.tensor_parallel_size, args.max_model_len) == (
        "/models/policy", 8123, 2, 4096)


def test_grpo_stage_vllm_server_section_validates(tmp_path: Path) -> None:
    body = GRPO + "    vllm_server: {devices: [1], port: 8123}\n"
    cfg = write_pipeline(tmp_path, "srv", body, data={"reasoning": "{builtin: reasoning}"})
    section = load(cfg).stages["r1_zero"].vllm_server
    assert section.devices == [1] and section.port == 8123 and section.host == "127.0.0.1"
    bad = write_pipeline(tmp_path, "srv", body.replace("max_steps: 2", "max_steps: 2\n"
                                                       "      vllm_mode: colocate"),
                         filename="bad.yaml", data={"reasoning": "{builtin: reasoning}"})
    with pytest.raises(ConfigError, match="vllm_server.*vllm_mode is 'colocate'"):
        load(bad)


def test_stage_server_points_the_trainer_at_the_server(tmp_path: Path) -> None:
    """On a non-main rank nothing starts; the TRL config is pointed at the server anyway."""
    from types import SimpleNamespace

    from r1pipe.config import VLLMServerSection
    from r1pipe.vllm_server import stage_server

    ctx = SimpleNamespace(config=SimpleNamespace(vllm_server=VLLMServerSection(port=8124)),
                          is_main_process=False, name="r1_zero", stage_dir=tmp_path)
    args = SimpleNamespace(use_vllm=False, vllm_mode="colocate")
    with stage_server(ctx, args, "m") as url:
        assert url == "http://127.0.0.1:8124"
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_base_url) == (
        True, "server", "http://127.0.0.1:8124")
    assert not (tmp_path / "vllm-server.log").exists()


# ----------------------------------------------------------------- the GPU check's config


def test_gpu_check_config_validates_and_dry_runs(tmp_path: Path) -> None:
    """configs/gpu-check.yaml with the overrides scripts/gpu_check.py gives a 2-GPU machine
    (a launch per stage; hf generation where vLLM is missing): valid, planned, not run."""
    out = subprocess.run([sys.executable, str(REPO / "scripts/gpu_check.py"), "--dry-run",
                          "--gpus", "2", "--run-dir", str(tmp_path / "run")], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "configs/accelerate/" in out.stdout and '"num_processes": 2' in out.stdout
    for stage in ("r1_zero", "reject_sample", "all_scenario_rl"):
        assert stage in out.stdout
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
