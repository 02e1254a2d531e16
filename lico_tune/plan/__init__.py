"""Spec -> plan, without Ray: the cells of a sweep, each resolved once into its validated trial
config, the selection and repeat rules, and the preflight checks that run before Ray starts.

    cells.py      Plan and plan_search: arms x grid axes, the checks, the smoke-test shrinking
    resolve.py    one cell's (and one sampled trial's) TrialConfig
    selection.py  what a search may select on; repeats over seeds
    inert.py      searched fields that cannot change training in a cell (refused, or named)
    preflight.py  offline data and weights, resources: before Ray starts
    capacity.py   whether a trial fits the joined cluster: its nodes, or a node type its autoscaler may launch
    fetchable.py  whether a download URL answers (one short request)
    targets.py    the trackers (MLflow, W&B) answer within a bound, with credentials: before Ray starts
"""
from .cells import Plan, plan_search

__all__ = ["Plan", "plan_search"]
