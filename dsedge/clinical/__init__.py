"""From logits to a decision a clinician can use (issue 13): calibration, the melanoma operating
point, bootstrap intervals, their plots, and `fit_bundle_risk` which fits them on a data split and
stores them in a bundle's manifest. The device side (applying them) is `dsedge.runtime.decision`.
"""
