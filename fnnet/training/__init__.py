"""Training: a compiled, reproducible loop with checkpoints, resume and the run's output files.

| module | what |
| --- | --- |
| `loop` | `fit` (the loop), `evaluate`, `FitResult`, `TrainingDiverged` |
| `epoch` | the jitted `lax.scan` chunk of training steps, the epoch's shuffle, batched evaluation |
| `checkpoint` | the checkpoint format, save/load, the latest valid one, resume checks |
| `outputs` | the run folder (checked, never two runs mixed), metrics.json, curves.png, params.npz |
"""

from fnnet.training.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_tree,
    restore_leaves,
    save_checkpoint,
    save_tree,
)
from fnnet.training.loop import FitResult, TrainingDiverged, evaluate, fit, output_size
from fnnet.training.outputs import RunFolderError, load_run_params

__all__ = [
    "FitResult", "CheckpointError", "TrainingDiverged", "RunFolderError", "fit", "evaluate", "output_size",
    "save_checkpoint", "load_checkpoint", "latest_checkpoint", "restore_leaves", "save_tree", "load_tree",
    "load_run_params",
]
