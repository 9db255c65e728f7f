"""The report of a landscape file (:mod:`~landscape.report.build`).

How it looks is :mod:`~landscape.report.render`, the ranking statistics behind it
:mod:`~landscape.report.ranking`. Reading a file needs NumPy and h5py only.
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
