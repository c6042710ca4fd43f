"""Offline reinforcement learning with return-conditioned sequence models (paper Table 3).

The paper trains Decision-Transformer-style policies with minGRU / minLSTM blocks on the D4RL
MuJoCo datasets. This package holds what that experiment needs besides the model:

- `minrnn.rl.data`: offline datasets as one in-memory container (`Trajectories`), read from D4RL
  HDF5 files, Decision Transformer's ``{env}-{dataset}-v2.pkl`` lists or Minari datasets;
- `minrnn.rl.scores`: D4RL's reference returns and `normalized_score`;
- `minrnn.rl.sampler`: Decision Transformer's training windows (return-to-go, states, actions,
  timesteps, left padding), drawn from the trainer's random generator;
- `minrnn.rl.evaluate`: many episodes of a policy in lock-step in gymnasium environments;
- `minrnn.rl.pendulum`: a reproducible generator of small offline datasets (Pendulum-v1) written
  in the D4RL layout, for a local benchmark that a CPU can afford.

``import minrnn`` never imports this package. Its heavy dependencies (gymnasium, h5py, minari) come
with the optional ``rl`` extra (``pip install 'minrnn[rl]'``) and are imported only by the
functions that use them.
"""

from minrnn.rl.data import DatasetError, Trajectories, load_trajectories
from minrnn.rl.scores import D4RL_REF_SCORES, normalized_score

__all__ = ["DatasetError", "Trajectories", "load_trajectories", "D4RL_REF_SCORES", "normalized_score"]
