"""Does an explanation find what the classifier really uses? Ground truth on phantoms, audits on users' data.

- `phantom_set`: phantom worlds as tensors, with interventional twins and masks;
- `cell`: one world x shortcut kind x seed end to end (classifiers, reliance, GAN, explanations, scores);
- `verdict`: the dataset-level verdict rule and its ground truth; `summary`, `targets`, `report`: the table;
- `benchmark`: `raygan fidelity` (`make fidelity`, `make fidelity-quick`); `sanity`: the full-pipeline
  randomisation check (`make fidelity-sanity`);
- `audit`: the same verdicts on users' data, reliance measured by swapping a region for other-class images.
No Ray anywhere here: the benchmark runs cells in plain worker processes, one torch thread each.
"""
