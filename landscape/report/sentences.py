"""The study's findings as sentences that say no more than the numbers behind them.

:func:`summarise` reads the document of :func:`landscape.report.analysis.analyse` and returns
sentences for its three parts: which runs are in (``study``), what the rankings show
(``rankings``) and what the good-vs-bad comparison shows (``good_vs_bad``). "Beats the
baselines" and "significant" are the document's own definitions (its ``design``); a sign that
disagrees with the expected one is reported whether or not its interval excludes 0, and
separately where it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ALPHA", "stop_text", "summarise"]

ALPHA = 0.05
"""The level an adjusted p-value is compared with."""


def stop_text(stop: Mapping[str, Any] | None) -> str:
    """A stopping target as text: ``"train_loss 0.01, at most 5000 steps"``."""
    if not stop:
        return "target not recorded"
    caps = {"max_steps": "steps", "max_epochs": "epochs"}
    parts = [f"{k} {v}" for k, v in stop.items() if k not in caps] or ["no target"]
    limits = [f"{stop[k]} {unit}" for k, unit in caps.items() if k in stop]
    if limits:
        parts.append("at most " + " or ".join(limits))
    return ", ".join(parts)


def _ci(ci: Any) -> str:
    return "no interval" if not ci else f"95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _tau(row: Mapping[str, Any]) -> str:
    return f"{row['measure']} tau {row['tau']:+.3f} ({_ci(row['ci'])}, n = {row['n']})"


def _list(names: list[str], limit: int = 12) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _study(doc: Mapping[str, Any]) -> list[str]:
    c, d = doc["counts"], doc["design"]
    out = []
    if not c["complete"]:
        return ["No run of the file is complete: nothing is aggregated or ranked."]
    if d["matched_stopping"]:
        target = stop_text(d["stop"])
        u = c["unconverged"]
        if not u:
            out.append(
                f"All {c['complete']} complete runs reached the sweep-wide stopping target "
                f"({target})."
            )
        elif d["include_unconverged"]:
            out.append(
                f"{u} of {c['complete']} complete runs did not reach the stopping target "
                f"({target}); they are included on request, so the rankings mix runs "
                "stopped at different points."
            )
        else:
            out.append(
                f"{u} of {c['complete']} complete runs did not reach the stopping target "
                f"({target}) and are left out of every aggregate and ranking."
            )
    elif len(d["stops_found"]) > 1:
        out.append(
            "The runs do not share one stopping target ("
            + "; ".join(stop_text(s) for s in d["stops_found"])
            + "): the rankings do not control for how far runs trained."
        )
    else:
        out.append(
            "There was no matched stopping target (not every run carries a convergence "
            "flag): every complete run is included, and the rankings do not control for how "
            "far runs trained."
        )
    if not c["included"]:
        out.append("No run reached the stopping target: nothing is aggregated or ranked.")
        return out
    sizes = [cfg["n"] for cfg in doc["configs"] if cfg["n"]]
    seeds = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)} to {max(sizes)}"
    out.append(
        f"{c['included']} runs are included, in {len(sizes)} configuration(s) of {seeds} "
        "seed(s) each."
    )
    one = [cfg["config"] for cfg in doc["configs"] if cfg["n"] == 1]
    if one:
        out.append(f"{len(one)} configuration(s) have one seed: no interval for them.")
    return out


def _rankings(doc: Mapping[str, Any]) -> list[str]:
    rows, d = doc["rankings"], doc["design"]
    n = doc["counts"]["included"]
    if n < d["min_runs"]:
        return [f"Fewer than {d['min_runs']} runs are included ({n}): no tau is computed."]
    base = [r for r in rows if r["baseline"]]
    meas = [r for r in rows if not r["baseline"]]
    out = []
    with_tau = [b for b in base if b["tau"] is not None]
    if with_tau:
        out.append("Baselines: " + "; ".join(_tau(b) for b in with_tau) + ".")
    if not meas:
        out.append("No measure to rank: the included runs hold no probes at their minima.")
        return out
    if not with_tau:
        out.append("No baseline has a tau, so no measure can be said to beat them.")
    else:
        beats = [r["measure"] for r in meas if r["beats_baselines"]]
        out.append(
            f"Measures that beat the baselines (their whole 95% interval for |tau| lies above "
            f"every baseline's |tau|): {_list(beats)}."
            if beats
            else "No measure beats the baselines: none has its whole 95% interval for |tau| "
            "above every baseline's |tau|."
        )
    sig = [r for r in rows if r["p_adjusted"] is not None and r["p_adjusted"] < ALPHA]
    how = f"{d['correction_name']}, {d['n_tests']} tests"
    if sig:
        out.append(
            f"Adjusted p < {ALPHA} ({how}): "
            + "; ".join(f"{_tau(r)}, p_adj {r['p_adjusted']:.2g}" for r in sig)
            + "."
        )
    else:
        out.append(f"No measure or baseline has an adjusted p-value below {ALPHA} ({how}).")
    signed = [r for r in meas if r["sign_agrees"] is not None]
    if signed:
        agree = sum(bool(r["sign_agrees"]) for r in signed)
        out.append(
            f"The sign of tau agrees with the expected sign for {agree} of {len(signed)} "
            "measures that have an expectation (whatever their interval)."
        )
    against = [
        r["measure"]
        for r in signed
        if not r["sign_agrees"] and r["ci"] and (r["ci"][0] > 0 or r["ci"][1] < 0)
    ]
    if against:
        out.append(
            f"Against the expected sign with a 95% interval that excludes 0: {_list(against)}."
        )
    fewer = [
        f"{r['measure']} (n = {r['n']} of {n})" for r in rows if r["n"] < n and r["tau"] is not None
    ]
    if fewer:
        out.append(f"Ranked over fewer runs (missing on the others): {_list(fewer)}.")
    no_tau = [f"{r['measure']} ({r['reason']})" for r in rows if r["tau"] is None]
    if no_tau:
        out.append(f"No tau for: {_list(no_tau, 6)}.")
    return out


def _good_vs_bad(doc: Mapping[str, Any]) -> list[str]:
    rows = doc["good_vs_bad"]
    if not rows:
        return [
            "The included runs do not come from both a random and a bad (random_labels) init "
            "(axis 'init'): no good-vs-bad comparison."
        ]
    groups: dict[str, list[str]] = {"above": [], "zero": [], "below": [], "none": []}
    for g in rows:
        ci = g["difference"]["ci"]
        key = "none" if not ci else "above" if ci[0] > 0 else "below" if ci[1] < 0 else "zero"
        groups[key].append(g["optimizer"])
    text = {
        "above": "lower test accuracy from the bad init (interval of random minus bad above 0)",
        "zero": "no difference detected (the interval includes 0)",
        "below": "higher test accuracy from the bad init (interval below 0)",
        "none": "no interval (fewer than 2 seeds on a side)",
    }
    out = [f"{text[k].capitalize()}: {_list(v)}." for k, v in groups.items() if v]
    if doc.get("good_vs_bad_one_init"):
        out.append(
            "Settings with included runs from one init only, not compared: "
            f"{_list(doc['good_vs_bad_one_init'])}."
        )
    return out


def summarise(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """Sentences for the document's parts (module docstring).

    Args:
        doc: the document of :func:`landscape.report.analysis.analyse`, without ``summary``.

    Returns:
        ``{"study": [...], "rankings": [...], "good_vs_bad": [...]}``.
    """
    return {"study": _study(doc), "rankings": _rankings(doc), "good_vs_bad": _good_vs_bad(doc)}
