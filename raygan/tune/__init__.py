"""`raygan tune`: Ray Tune sweeps of the inversion weights, learning rate, steps and traversal rate.

objective.py  the documented objective J over explanation arrays (pure; `score`)
space.py      the search space and its mapping to InversionConfig / TraversalConfig
evaluation.py latents or settings -> the arrays J scores (torch only)
trial.py      the Tune function trainable (intermediate reports for ASHA)
table.py      the results table (CSV, Markdown)
sweep.py      the driver (`run_sweep`): samples, Tuner, re-scoring, bundle update

Nothing here imports Ray at module level; `trial` and `sweep` import it inside their functions.
"""

from raygan.tune.objective import Evaluation, ObjectiveWeights, Score, score
from raygan.tune.space import SearchSpace
from raygan.tune.sweep import SweepConfig, SweepResult, run_sweep

__all__ = ["Evaluation", "ObjectiveWeights", "Score", "SearchSpace", "SweepConfig", "SweepResult", "run_sweep", "score"]
