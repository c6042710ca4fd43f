"""Training loop, its configuration and checkpoints."""

from minrnn.train.config import TrainConfig


def __getattr__(name: str):
    # The Trainer (tqdm, distributed, plots) is imported on first use: `import minrnn` reads
    # checkpoints through minrnn.train.checkpoint and should not pay for the training loop.
    if name == "Trainer":
        from minrnn.train.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'minrnn.train' has no attribute {name!r}")


__all__ = ["TrainConfig", "Trainer"]
