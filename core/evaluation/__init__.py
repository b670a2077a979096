"""Measuring and judging a leaf: metrics, the Beam evaluation, the gates, Pareto fronts."""
