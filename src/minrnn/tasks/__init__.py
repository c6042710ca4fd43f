"""Experiments of the paper, each a task the CLI can train (``minrnn train TASK ...``).

A task module provides:

- ``PRESETS`` (name -> configs), ``DEFAULT_PRESET`` and ``MODEL_KINDS`` (what ``--model`` takes,
  kinds of `minrnn.models.registry`); optionally ``KIND_DEFAULTS`` (preset -> kind -> model
  settings that kind uses instead of the preset's, e.g. the Transformer's depth); optionally
  ``MODEL_FAMILY`` ("lm" by default; "decision" for offline RL's decision model) and
  ``preset_settings(preset, task_cfg) -> dict`` (settings a preset takes for a task config, e.g.
  the paper's per-dataset width and learning rate);
- ``TaskConfig``: a dataclass of the task's own settings (each field becomes a CLI flag);
- ``configs(preset) -> (LMConfig, TrainConfig, TaskConfig)``: fresh copies of a preset;
- optionally ``prepare(model_settings, train_cfg, task_cfg)``: checks (and completes) a run's configs;
- ``setup(model_config, train_cfg, task_cfg) -> TaskSetup``: batches, loss and metrics of a run;
- optionally ``finish(trainer, model_config, train_cfg, task_cfg) -> dict``: results after training.

`minrnn.tasks.base.run_task` runs one of them end to end.
"""

from minrnn.tasks import rl, selective_copy, shakespeare, text

TASKS = {"shakespeare": shakespeare, "text": text, "selective-copy": selective_copy, "rl": rl}

__all__ = ["TASKS"]
