"""Offline RL (paper Table 3): a return-conditioned policy trained on an offline dataset.

    minrnn train rl --data ~/.d4rl/datasets/hopper_medium-v2.hdf5 --env Hopper-v4 --model minlstm \\
        --preset paper --steps 100000 --out runs/hopper-medium-minlstm
    minrnn eval rl runs/hopper-medium-minlstm --episodes 100

The model is `minrnn.models.decision.DecisionModel`: Decision Transformer's return / state / action
/ timestep embeddings over a backbone chosen with ``--model`` (mingru, minlstm: the paper's
minRNN -> MLP blocks; transformer: the Decision Transformer baseline; gru, lstm), trained with the
squared error of its actions on DT's windows (`minrnn.rl.sampler`). ``--data`` is a D4RL HDF5 file,
a DT ``.pkl`` or ``minari:<dataset id>`` (`minrnn.rl.data`); ``--env`` the gymnasium environment
that evaluation runs (default: the one the dataset records). ``--context`` is DT's K (timesteps per
window). The checkpoints carry what evaluation needs: the state mean / std, the action bounds, the
return scale, the environment id, the target returns and the normalisation references.

Presets:

- ``paper``: the paper's setup (Decision Mamba's script): 3 layers, dropout 0.1, K 20, batch 64,
  AdamW (betas 0.9 / 0.999 as torch's default that DT used) with weight decay 1e-4, 10k linear
  warm-up steps then a constant lr, grad clip 0.25, 100k steps; d 128 and lr 1e-3, except d 256
  for Hopper medium and medium-replay and lr 1e-4 for Hopper medium, medium-replay and Walker2d
  medium (picked from the dataset's name, `paper_settings`; flags still override them). Returns
  are scaled by 1000, episodes last at most 1000 steps, and evaluation conditions on DT's targets.
  Differences from DT's code: weight decay skips biases, norms and embeddings (the project's
  `param_groups`), and the Transformer baseline uses the project's GELU blocks.
- ``pendulum``: sized for the local Pendulum-v1 benchmark on one CPU core (see results/rl/).

The paper does not say which checkpoint it reports, nor its targets, episode count or evaluation
mode: `minrnn eval rl` evaluates the latest checkpoint (the end of training, as DT) in window mode
(DT's) by default, and writes what it chose beside the scores.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from minrnn.models.decision import action_loss
from minrnn.models.lm import LMConfig
from minrnn.rl.data import Trajectories, load_trajectories
from minrnn.rl.sampler import Normalizer, WindowSampler
from minrnn.rl.scores import D4RL_REF_SCORES, DT_SCALE, DT_TARGETS, d4rl_family, normalized_score
from minrnn.tasks.base import TaskSetup
from minrnn.train.config import TrainConfig
from minrnn.train.distributed import dist_info
from minrnn.train.trainer import Trainer

MODEL_KINDS = ("mingru", "minlstm", "transformer", "gru", "lstm")
MODEL_FAMILY = "decision"  # --model names the decision model's backbone (minrnn.models.registry)
EVAL_FILE = "eval-{checkpoint}-{mode}.json"


@dataclass
class TaskConfig:
    """The dataset, the environment and how evaluation runs."""

    data: str = ""  # D4RL .hdf5, Decision Transformer .pkl, or minari:<dataset id>
    env: str = ""  # gymnasium id of the environment (default: the dataset's own)
    scale: float = DT_SCALE  # returns-to-go are divided by it
    max_ep_len: int = 1000  # longest episode (timestep embedding size; splits files without timeouts)
    targets: str = ""  # comma-separated target returns (default: DT's for D4RL tasks, else the dataset's expert reference, else its best return)
    eval_episodes: int = 0  # after training, evaluate this many episodes per target (0: not; see `minrnn eval rl`)
    eval_mode: str = "window"  # "window" (DT's) or "recurrent"

    def to_dict(self) -> dict:
        return asdict(self)


def _model(d_model: int) -> LMConfig:
    """The decision model's settings, as the model fields every task's presets use: 3 layers,
    dropout 0.1, minRNN expansion 2 and MLP 4 x d (no conv: the paper's RL block is minRNN -> MLP)."""
    return LMConfig(d_model=d_model, n_layers=3, dropout=0.1, expansion=2.0, mlp_ratio=4.0, conv_kernel=0, cell="mingru")


PRESETS: dict[str, tuple[LMConfig, TrainConfig, TaskConfig]] = {
    "paper": (
        _model(128),
        TrainConfig(
            steps=100_000, batch_size=64, context=20, lr=1e-3, warmup_steps=10_000, lr_schedule="constant",
            weight_decay=1e-4, beta2=0.999, grad_clip=0.25, eval_every=1000, eval_iters=10,
        ),
        TaskConfig(),
    ),
    # The local Pendulum-v1 benchmark on one shared CPU core (results/rl/README.md): width 32, the
    # paper's 3 layers and dropout, K 10 (Pendulum is Markov), batch 32, 1000 steps, 20 evaluation
    # episodes; sized so that 27 runs fit in about 1.5 hours. Pendulum returns lie in about
    # [-1600, 0] over 200 steps, hence scale 100.
    "pendulum": (
        _model(32),
        TrainConfig(
            steps=1000, batch_size=32, context=10, lr=1e-3, warmup_steps=100, lr_schedule="constant",
            weight_decay=1e-4, beta2=0.999, grad_clip=0.25, eval_every=250, eval_iters=5,
        ),
        TaskConfig(scale=100.0, max_ep_len=200, eval_episodes=20),
    ),
}
DEFAULT_PRESET = "pendulum"


def configs(name: str) -> tuple[LMConfig, TrainConfig, TaskConfig]:
    """Fresh copies of a preset's model, training and task configs."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}")
    return tuple(replace(c) for c in PRESETS[name])  # type: ignore[return-value]


def dataset_name(data: str) -> tuple[str | None, str | None]:
    """(D4RL family, dataset kind) read from a dataset's name, e.g. ``hopper_medium-v2.hdf5``,
    ``hopper-medium-replay-v2.pkl`` or ``minari:mujoco/hopper/medium-v0`` -> ("hopper", "medium")."""
    name = re.sub(r"[_/\s]+", "-", Path(data).name if not data.startswith("minari:") else data).lower()
    kind = next((k for k in ("medium-replay", "medium-expert", "medium", "expert", "random") if k in name), None)
    return d4rl_family(name), kind


def paper_settings(data: str) -> dict:
    """The paper's per-dataset width and learning rate (Decision Mamba's script): d 256 for Hopper
    medium and medium-replay; lr 1e-4 for those and Walker2d medium; otherwise the preset's."""
    family, kind = dataset_name(data)
    out: dict = {}
    if family == "hopper" and kind in ("medium", "medium-replay"):
        out.update(d_model=256, lr=1e-4)
    if family == "walker2d" and kind == "medium":
        out.update(lr=1e-4)
    return out


def preset_settings(preset: str, task_cfg: TaskConfig) -> dict:
    """Settings a preset takes for this dataset before the user's flags (paper: `paper_settings`)."""
    return paper_settings(task_cfg.data) if preset == "paper" else {}


# ----------------------------------------------------------------------------- data and references


_LOADED: dict[tuple, Trajectories] = {}


def load(data: str, max_ep_len: int) -> Trajectories:
    """The dataset, read once per process (`prepare` and `setup` both need it) unless its file changed."""
    if not data:
        raise ValueError("--data is required: a D4RL .hdf5 file, a Decision Transformer .pkl or minari:<dataset id>")
    path = Path(data)
    key = (data, max_ep_len, path.stat().st_mtime_ns if path.is_file() else None)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_trajectories(data, max_episode_steps=max_ep_len)
    return _LOADED[key]


def env_id_of(task_cfg: TaskConfig, data: Trajectories) -> str:
    env_id = task_cfg.env or data.env_id
    if not env_id:
        raise ValueError(f"{data.source} does not record its environment; pass --env (e.g. Hopper-v4, gymnasium's closest to the Hopper-v3 D4RL was collected on)")
    return env_id


def reference_scores(env_id: str, data: Trajectories) -> tuple[float, float] | None:
    """(random, expert) returns for the normalised score: the dataset's own if it carries them
    (Minari, the local generator), else D4RL's for a D4RL task, else None."""
    if data.ref_scores is not None:
        return data.ref_scores
    family = d4rl_family(env_id)
    return D4RL_REF_SCORES[family] if family else None


def default_targets(env_id: str, data: Trajectories) -> list[float]:
    """DT's targets for a D4RL task; otherwise the dataset's expert reference; otherwise its best
    episode return."""
    family = d4rl_family(env_id)
    if family is not None:
        return list(DT_TARGETS[family])
    if data.ref_scores is not None:
        return [data.ref_scores[1]]
    return [float(data.returns.max())]


def parse_targets(text: str) -> list[float]:
    try:
        targets = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--targets must be comma-separated numbers, got {text!r}") from None
    if not targets:
        raise ValueError(f"--targets must name at least one return, got {text!r}")
    return targets


# ----------------------------------------------------------------------------- a run


def prepare(model_settings: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> None:
    """Read and check the dataset against the environment, and give the model its dimensions."""
    from minrnn.rl.envs import env_info

    if task_cfg.eval_mode not in ("window", "recurrent"):
        raise ValueError(f"eval_mode must be 'window' or 'recurrent', got {task_cfg.eval_mode!r}")
    if not (math.isfinite(task_cfg.scale) and task_cfg.scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {task_cfg.scale}")
    if task_cfg.max_ep_len < 1:
        raise ValueError(f"max_ep_len must be >= 1, got {task_cfg.max_ep_len}")
    if task_cfg.eval_episodes < 0:
        raise ValueError(f"eval_episodes must be >= 0 (0: no evaluation after training), got {task_cfg.eval_episodes}")
    if task_cfg.targets:
        parse_targets(task_cfg.targets)
    data = load(task_cfg.data, task_cfg.max_ep_len)
    info = env_info(env_id_of(task_cfg, data))
    data.check_env(info.obs_dim, info.act_dim, info.env_id)
    model_settings.update(state_dim=data.state_dim, act_dim=data.act_dim, max_ep_len=task_cfg.max_ep_len)


def run_info(task_cfg: TaskConfig, data: Trajectories) -> dict:
    """What evaluation needs, stored in the checkpoints under ``"rl"``."""
    from minrnn.rl.envs import env_info

    env_id = env_id_of(task_cfg, data)
    info = env_info(env_id)
    normalizer = Normalizer.fit(data, task_cfg.scale, info.action_low, info.action_high)
    return {
        "env_id": env_id,
        "normalizer": normalizer.to_dict(),
        "targets": parse_targets(task_cfg.targets) if task_cfg.targets else default_targets(env_id, data),
        "refs": reference_scores(env_id, data),
        "max_ep_len": task_cfg.max_ep_len,
        "data": data.summary(),
    }


def setup(model_config: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> TaskSetup:
    """Windows of the dataset for one run; the normalisation and evaluation facts go into the checkpoint."""
    data = load(task_cfg.data, task_cfg.max_ep_len)
    if (model_config["state_dim"], model_config["act_dim"]) != (data.state_dim, data.act_dim):
        raise ValueError(f"the model reads {model_config['state_dim']} / {model_config['act_dim']} state / action dims, but {data.source} has {data.state_dim} / {data.act_dim}")
    info = run_info(task_cfg, data)
    sampler = WindowSampler(data, Normalizer.from_dict(info["normalizer"]), context=train_cfg.context, max_ep_len=task_cfg.max_ep_len)

    def get_batch(split: str, generator: torch.Generator):
        window = sampler.sample(train_cfg.batch_size, generator)
        return window, window["actions"]  # the targets are the window's own actions (the model is causal)

    summary = (
        f"{data.n_episodes:,} episodes / {data.n_steps:,} steps of {data.source} (mean return {data.returns.mean():.1f}), "
        f"env {info['env_id']}, K {train_cfg.context}"
    )
    return TaskSetup(get_batch=get_batch, loss_fn=action_loss, extra={"rl": info}, summary=summary)


def finish(trainer: Trainer, model_config: dict, train_cfg: TrainConfig, task_cfg: TaskConfig) -> dict:
    """The dataset's own mean return (and normalised score); with ``eval_episodes`` > 0, also
    evaluate the final model and write its scores into the run folder."""
    info = trainer.extra["rl"]
    out = {"data_return": info["data"]["return"]["mean"]}
    if info["refs"]:
        out["data_normalized"] = normalized_score(info["env_id"], out["data_return"], tuple(info["refs"]))
    if task_cfg.eval_episodes < 1 or not dist_info().is_main:
        return out
    from minrnn.rl.evaluate import save_json

    result = evaluate_model(trainer.model, info, task_cfg.eval_episodes, task_cfg.eval_mode, device=trainer.device, context=train_cfg.context)
    result.update(checkpoint="latest", step=trainer.step)
    save_json(result, trainer.out_dir / EVAL_FILE.format(checkpoint="latest", mode=task_cfg.eval_mode))
    return {**out, **headline(result)}


def headline(result: dict) -> dict:
    """The first target's mean return and normalised score (for result.json and tables)."""
    first = result["results"][0]
    out = {"eval_target": first["target"], "eval_return": first["return_mean"]}
    if "normalized_mean" in first:
        out["eval_normalized"] = first["normalized_mean"]
    return out


# ----------------------------------------------------------------------------- evaluation


def evaluate_model(
    model: torch.nn.Module,
    info: dict,
    episodes: int,
    mode: str = "window",
    *,
    targets: list[float] | None = None,
    context: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """Evaluate a decision model with the facts of its run (``info``: a checkpoint's ``"rl"``)."""
    from minrnn.rl.evaluate import EvalConfig, evaluate

    if mode == "recurrent" and not getattr(model, "recurrent", False):
        raise ValueError("recurrent evaluation needs a recurrent backbone (mingru, minlstm, gru, lstm); use --mode window")
    cfg = EvalConfig(
        env_id=info["env_id"], targets=targets or info["targets"], episodes=episodes, mode=mode, context=context,
        max_ep_len=info["max_ep_len"], seed=seed,
    )
    refs = tuple(info["refs"]) if info.get("refs") else None
    was = model.training
    result = evaluate(model.to(device), Normalizer.from_dict(info["normalizer"]), cfg, refs=refs, device=device, progress=progress)
    model.train(was)
    return result


def evaluate_run(
    run_dir: str | Path,
    episodes: int,
    mode: str = "window",
    *,
    checkpoint: str = "latest",
    targets: list[float] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[dict, Path]:
    """Evaluate a run folder's checkpoint; writes ``eval-<checkpoint>-<mode>.json`` there and
    returns (result, path)."""
    from minrnn.pretrained import load_run
    from minrnn.rl.evaluate import save_json
    from minrnn.train.device import resolve_device

    device = resolve_device(device)
    model, ckpt, path = load_run(run_dir, checkpoint)
    if "rl" not in ckpt:
        raise ValueError(f"{path} is not an offline-RL run (written by `minrnn train rl`)")
    context = int(ckpt["config"]["train"]["context"])
    result = evaluate_model(model, ckpt["rl"], episodes, mode, targets=targets, context=context, seed=seed, device=device, progress=progress)
    result.update(checkpoint=checkpoint, step=ckpt.get("step"), file=str(path))
    out = Path(run_dir) if Path(run_dir).is_dir() else path.parent
    return result, save_json(result, out / EVAL_FILE.format(checkpoint=checkpoint, mode=mode))


__all__ = [
    "MODEL_KINDS", "MODEL_FAMILY", "PRESETS", "DEFAULT_PRESET", "TaskConfig", "configs", "preset_settings", "prepare", "setup",
    "finish", "evaluate_run",
]
