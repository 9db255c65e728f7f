"""Probes: functions of ``(model, loss_fn, data, ...)`` that measure curvature, sharpness,
paths and implicit bias through :class:`landscape.Objective`. The probe families arrive with
their own modules (hessian, sharpness, interpolation, implicit_bias)."""

__all__: list[str] = []
