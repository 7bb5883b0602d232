"""Pictures and reports: PNG images, heat maps, the paper's Figure 2, and self-contained HTML reports.

Everything here is pure (tensors and tables in, PIL images / bytes / HTML text out) except
`write_dataset_report` (and `read_results`), the I/O edge used by `raygan report`.

  images.py   to_uint8, png_bytes, heatmap: tensors and maps -> pixels
  figure.py   traversal_strip, explanation_figure: the paper's Figure 2
  charts.py   matplotlib curves and histograms
  html.py     the page shell, tables, inline images
  report.py   explanation_report: a few explained images
  regions.py  where a map puts its mass (border, corners, outside the lungs)
  dataset.py  dataset_report, write_dataset_report: a whole results dataset
"""

from raygan.render.dataset import ReportError, dataset_report, read_results, write_dataset_report
from raygan.render.figure import explanation_figure, traversal_strip
from raygan.render.images import heatmap, png_bytes, to_uint8
from raygan.render.report import explanation_report

__all__ = [
    "ReportError", "dataset_report", "explanation_figure", "explanation_report", "heatmap", "png_bytes", "read_results",
    "to_uint8", "traversal_strip", "write_dataset_report",
]
