"""The report of a landscape file (:mod:`~landscape.report.build`).

What it reads is :mod:`~landscape.report.read`; the study (configurations over seeds,
rankings with intervals and adjusted p-values, baselines, good vs bad minima) is
:mod:`~landscape.report.analysis` on the statistics of :mod:`~landscape.report.study` (runs,
configurations, good vs bad), :mod:`~landscape.report.study_rank` (rankings) and
:mod:`~landscape.report.expectations` (expected signs), the differences between
configurations with Welch intervals :mod:`~landscape.report.contrasts`, the values a seed
:mod:`~landscape.report.seeds`, barriers over pairs of seeds
:mod:`~landscape.report.paths_summary`, put into words by
:mod:`~landscape.report.sentences`; how it looks is
:mod:`~landscape.report.render` and :mod:`~landscape.report.render_study`; the plain ranking
statistics :mod:`~landscape.report.ranking`. Reading a file needs NumPy, SciPy and h5py only.
"""

from landscape.report.build import MISSING, MeasureRank, Report, Table, report
from landscape.report.ranking import GranulatedTau, Tau, granulated_tau, kendall_tau

__all__ = [
    "MISSING",
    "GranulatedTau",
    "MeasureRank",
    "Report",
    "Table",
    "Tau",
    "granulated_tau",
    "kendall_tau",
    "report",
]
